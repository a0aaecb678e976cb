"""Independent references for the video tests (spec/lwm-reference.md §3.1), written the way LWM's
Python code does it: numpy's linspace for frame selection, Pillow for resize and crop.

  video_reference.py indices N n [N n ...]        -> one line of indices per pair
  video_reference.py geometry W H size [...]      -> "resized_w resized_h left top" per triple
  video_reference.py preprocess in.rgb W H size out.f32
"""
import sys

import numpy as np


def indices(frame_count, max_frames):
    if frame_count <= max_frames:
        return list(range(frame_count))
    return [int(i) for i in np.linspace(0, frame_count - 1, max_frames).astype(np.int64)]


def geometry(w, h, size):
    if w < h:
        new_w, new_h = size, int(size * h / w)
    else:
        new_w, new_h = int(size * w / h), size
    return new_w, new_h, round((new_w - size) / 2), round((new_h - size) / 2)


def preprocess(path, w, h, size, out):
    from PIL import Image

    pixels = np.fromfile(path, dtype=np.uint8).reshape(h, w, 3)
    image = Image.fromarray(pixels, "RGB")
    new_w, new_h, left, top = geometry(w, h, size)
    image = image.resize((new_w, new_h), Image.BICUBIC)
    image = image.crop((left, top, left + size, top + size))
    result = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    result.astype(np.float32).tofile(out)


def main():
    command, args = sys.argv[1], sys.argv[2:]
    if command == "indices":
        for i in range(0, len(args), 2):
            print(" ".join(str(x) for x in indices(int(args[i]), int(args[i + 1]))))
    elif command == "geometry":
        for i in range(0, len(args), 3):
            print(" ".join(str(x) for x in geometry(int(args[i]), int(args[i + 1]), int(args[i + 2]))))
    elif command == "preprocess":
        preprocess(args[0], int(args[1]), int(args[2]), int(args[3]), args[4])
    else:
        sys.exit("unknown command " + command)


if __name__ == "__main__":
    main()
