// EPUB books (EPUB 2 and 3): a zip (libzip) of XML (libxml2). META-INF/container.xml names the
// package document (OPF); its spine orders the XHTML documents whose text we keep; chapter titles
// come from the navigation document (EPUB 3) or the NCX (EPUB 2), else from each document's first
// heading.
#include <libxml/HTMLparser.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "media/book_readers.h"
#include "zip_archive.h"

namespace lwm::book_detail {
namespace {

// Largest document we inflate from the archive: XHTML chapters are kilobytes to a few megabytes;
// anything past this is a zip bomb or not a book.
constexpr std::uint64_t kMaxEntryBytes = std::uint64_t{256} << 20;

constexpr const char* kOpsNamespace = "http://www.idpf.org/2007/ops";

std::string_view as_view(const xmlChar* text) {
  return text == nullptr ? std::string_view()
                         : std::string_view(reinterpret_cast<const char*>(text));
}

// ---------------------------------------------------------------------------------------------
// The archive

// ---------------------------------------------------------------------------------------------
// XML documents

struct DocFree {
  void operator()(xmlDoc* doc) const { xmlFreeDoc(doc); }
};
using XmlDocument = std::unique_ptr<xmlDoc, DocFree>;

struct ContextFree {
  void operator()(xmlParserCtxt* context) const { xmlFreeParserCtxt(context); }
};

// Parses entry `name` strictly: an EPUB's documents must be well-formed XML. No network access
// and no external DTDs or entities (XML_PARSE_NOENT stays off), so a book cannot make us fetch or
// read anything else.
XmlDocument parse_xml(const std::filesystem::path& path, const std::string& name,
                      const std::string& bytes, const std::string& what) {
  static const bool initialised = [] {
    xmlInitParser();
    return true;
  }();
  (void)initialised;
  std::unique_ptr<xmlParserCtxt, ContextFree> context(xmlNewParserCtxt());
  if (!context) throw Error(ErrorKind::out_of_memory, "cannot allocate an XML parser");
  if (bytes.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
    fail(ErrorKind::file_format, path, "has a " + what + " '" + name + "' too large to parse");
  }
  XmlDocument doc(xmlCtxtReadMemory(context.get(), bytes.data(), static_cast<int>(bytes.size()),
                                    name.c_str(), nullptr,
                                    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING));
  if (!doc || xmlDocGetRootElement(doc.get()) == nullptr) {
    std::string reason = "no root element";
    if (const xmlError* error = xmlCtxtGetLastError(context.get());
        error != nullptr && error->message != nullptr) {
      reason = "line " + std::to_string(error->line) + ": " + error->message;
      while (!reason.empty() && (reason.back() == '\n' || reason.back() == ' ')) reason.pop_back();
    }
    fail(ErrorKind::file_format, path,
         "has a " + what + " '" + name + "' that is not well-formed XML (" + reason + ")");
  }
  return doc;
}

bool is_element(const xmlNode* node, std::string_view local_name) {
  return node != nullptr && node->type == XML_ELEMENT_NODE && as_view(node->name) == local_name;
}

// The value of attribute `local_name` in any namespace (OPF files mix prefixed and plain ones).
std::string attribute(const xmlNode* node, std::string_view local_name) {
  for (const xmlAttr* a = node->properties; a != nullptr; a = a->next) {
    if (as_view(a->name) != local_name) continue;
    xmlChar* value = xmlNodeListGetString(node->doc, a->children, 1);
    std::string result(as_view(value));
    xmlFree(value);
    return result;
  }
  return {};
}

// epub:type (in the OPS namespace), which marks the table of contents in a navigation document.
std::string epub_type(const xmlNode* node) {
  for (const xmlAttr* a = node->properties; a != nullptr; a = a->next) {
    if (as_view(a->name) == "type" && a->ns != nullptr && as_view(a->ns->href) == kOpsNamespace) {
      xmlChar* value = xmlNodeListGetString(node->doc, a->children, 1);
      std::string result(as_view(value));
      xmlFree(value);
      return result;
    }
  }
  return {};
}

// Text content with whitespace runs collapsed to single spaces and trimmed.
std::string collapsed_text(const xmlNode* node) {
  xmlChar* content = xmlNodeGetContent(node);
  const std::string_view raw = as_view(content);
  std::string text;
  bool space = false;
  for (const char c : raw) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      space = !text.empty();
    } else {
      if (space) text += ' ';
      space = false;
      text += c;
    }
  }
  xmlFree(content);
  return text;
}

template <typename Visit>
void for_each_element(xmlNode* node, const Visit& visit) {
  for (xmlNode* child = node; child != nullptr; child = child->next) {
    if (child->type != XML_ELEMENT_NODE) continue;
    visit(child);
    for_each_element(child->children, visit);
  }
}

xmlNode* find_element(xmlNode* node, std::string_view local_name) {
  xmlNode* found = nullptr;
  for_each_element(node, [&](xmlNode* element) {
    if (found == nullptr && is_element(element, local_name)) found = element;
  });
  return found;
}

// ---------------------------------------------------------------------------------------------
// Paths inside the archive: hrefs are URLs relative to the document that holds them.

std::string percent_decode(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size() &&
        std::isxdigit(static_cast<unsigned char>(text[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(text[i + 2]))) {
      out += static_cast<char>(std::stoi(std::string(text.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

std::string directory_of(const std::string& name) {
  const std::size_t slash = name.rfind('/');
  return slash == std::string::npos ? std::string() : name.substr(0, slash + 1);
}

// Resolves `href` (without its fragment) against `base_dir` into an archive entry name.
std::string resolve(const std::string& base_dir, std::string_view href) {
  href = href.substr(0, href.find('#'));
  std::string joined =
      href.starts_with("/") ? percent_decode(href.substr(1)) : base_dir + percent_decode(href);
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (start <= joined.size()) {
    std::size_t end = joined.find('/', start);
    if (end == std::string::npos) end = joined.size();
    const std::string part = joined.substr(start, end - start);
    if (part == "..") {
      if (!parts.empty()) parts.pop_back();
    } else if (!part.empty() && part != ".") {
      parts.push_back(part);
    }
    start = end + 1;
  }
  std::string name;
  for (const auto& part : parts) name += (name.empty() ? "" : "/") + part;
  return name;
}

std::string fragment_of(std::string_view href) {
  const std::size_t hash = href.find('#');
  return hash == std::string_view::npos ? std::string() : percent_decode(href.substr(hash + 1));
}

// ---------------------------------------------------------------------------------------------
// The package document

struct ManifestItem {
  std::string name;  // archive entry
  std::string media_type;
  std::string properties;
};

struct Package {
  std::string name;  // the OPF's entry name
  std::string title;
  std::string author;
  std::map<std::string, ManifestItem> manifest;  // by id
  std::vector<std::string> spine;                // manifest ids, in reading order
  std::string ncx_id;                            // spine@toc (EPUB 2)
};

std::string package_name(const ZipArchive& archive, const std::filesystem::path& path) {
  const std::string container_name = "META-INF/container.xml";
  if (!archive.contains(container_name)) {
    fail(ErrorKind::file_format, path,
         "is a zip archive without META-INF/container.xml, so it is not an EPUB");
  }
  const XmlDocument container =
      parse_xml(path, container_name, archive.read(container_name, "container", kMaxEntryBytes),
                "container file");
  const xmlNode* rootfile = find_element(xmlDocGetRootElement(container.get()), "rootfile");
  const std::string name = rootfile == nullptr ? std::string() : attribute(rootfile, "full-path");
  if (name.empty()) {
    fail(ErrorKind::file_format, path,
         "has a META-INF/container.xml that names no package document (no rootfile full-path)");
  }
  return name;
}

Package read_package(const ZipArchive& archive, const std::filesystem::path& path) {
  Package package;
  package.name = package_name(archive, path);
  const XmlDocument opf =
      parse_xml(path, package.name, archive.read(package.name, "package document", kMaxEntryBytes),
                "package document");
  const std::string base = directory_of(package.name);
  xmlNode* root = xmlDocGetRootElement(opf.get());
  for_each_element(root, [&](xmlNode* element) {
    if (is_element(element, "title") && package.title.empty()) {
      package.title = collapsed_text(element);
    } else if (is_element(element, "creator") && package.author.empty()) {
      package.author = collapsed_text(element);
    } else if (is_element(element, "item")) {
      const std::string id = attribute(element, "id");
      const std::string href = attribute(element, "href");
      if (!id.empty() && !href.empty()) {
        package.manifest[id] = {resolve(base, href), attribute(element, "media-type"),
                                attribute(element, "properties")};
      }
    } else if (is_element(element, "spine")) {
      package.ncx_id = attribute(element, "toc");
    } else if (is_element(element, "itemref")) {
      package.spine.push_back(attribute(element, "idref"));
    }
  });
  if (package.spine.empty()) {
    fail(ErrorKind::file_format, path,
         "has a package document '" + package.name + "' whose spine lists no documents");
  }
  for (const auto& id : package.spine) {
    if (package.manifest.count(id) == 0) {
      fail(ErrorKind::file_format, path,
           "has a spine entry '" + id + "' that the manifest of '" + package.name +
               "' does not declare");
    }
  }
  return package;
}

// ---------------------------------------------------------------------------------------------
// Table of contents

struct TocEntry {
  std::string title;
  std::string target;    // archive entry name
  std::string fragment;  // element id inside it, or empty
  int depth = 1;
};

void read_nav_list(xmlNode* list, const std::string& base, int depth,
                   std::vector<TocEntry>& entries) {
  for (xmlNode* item = list->children; item != nullptr; item = item->next) {
    if (!is_element(item, "li")) continue;
    for (xmlNode* child = item->children; child != nullptr; child = child->next) {
      if (is_element(child, "a")) {
        const std::string href = attribute(child, "href");
        if (!href.empty()) {
          entries.push_back({collapsed_text(child), resolve(base, href), fragment_of(href), depth});
        }
      } else if (is_element(child, "ol") || is_element(child, "ul")) {
        read_nav_list(child, base, depth + 1, entries);
      }
    }
  }
}

// EPUB 3: <nav epub:type="toc"><ol><li><a href="...">Title</a><ol>...</ol></li></ol></nav>.
std::vector<TocEntry> read_nav(const ZipArchive& archive, const std::filesystem::path& path,
                               const std::string& name) {
  const XmlDocument doc = parse_xml(
      path, name, archive.read(name, "navigation document", kMaxEntryBytes), "navigation document");
  xmlNode* toc = nullptr;
  xmlNode* first_nav = nullptr;
  for_each_element(xmlDocGetRootElement(doc.get()), [&](xmlNode* element) {
    if (!is_element(element, "nav")) return;
    if (first_nav == nullptr) first_nav = element;
    if (toc == nullptr && epub_type(element).find("toc") != std::string::npos) toc = element;
  });
  if (toc == nullptr) toc = first_nav;
  std::vector<TocEntry> entries;
  if (toc == nullptr) return entries;
  for (xmlNode* child = toc->children; child != nullptr; child = child->next) {
    if (is_element(child, "ol") || is_element(child, "ul")) {
      read_nav_list(child, directory_of(name), 1, entries);
    }
  }
  return entries;
}

void read_nav_points(xmlNode* parent, const std::string& base, int depth,
                     std::vector<TocEntry>& entries) {
  for (xmlNode* point = parent->children; point != nullptr; point = point->next) {
    if (!is_element(point, "navPoint")) continue;
    std::string title;
    std::string src;
    for (xmlNode* child = point->children; child != nullptr; child = child->next) {
      if (is_element(child, "navLabel")) title = collapsed_text(child);
      if (is_element(child, "content")) src = attribute(child, "src");
    }
    if (!src.empty()) entries.push_back({title, resolve(base, src), fragment_of(src), depth});
    read_nav_points(point, base, depth + 1, entries);
  }
}

// EPUB 2: <navMap><navPoint><navLabel><text>Title</text></navLabel><content src="..."/>.
std::vector<TocEntry> read_ncx(const ZipArchive& archive, const std::filesystem::path& path,
                               const std::string& name) {
  const XmlDocument doc =
      parse_xml(path, name, archive.read(name, "NCX table of contents", kMaxEntryBytes),
                "NCX table of contents");
  std::vector<TocEntry> entries;
  if (xmlNode* map = find_element(xmlDocGetRootElement(doc.get()), "navMap")) {
    read_nav_points(map, directory_of(name), 1, entries);
  }
  return entries;
}

std::vector<TocEntry> read_table_of_contents(const ZipArchive& archive,
                                             const std::filesystem::path& path,
                                             const Package& package) {
  for (const auto& [id, item] : package.manifest) {
    const std::string properties = " " + item.properties + " ";
    if (properties.find(" nav ") != std::string::npos && archive.contains(item.name)) {
      auto entries = read_nav(archive, path, item.name);
      if (!entries.empty()) return entries;
    }
  }
  const auto ncx = package.manifest.find(package.ncx_id);
  if (ncx != package.manifest.end() && archive.contains(ncx->second.name)) {
    return read_ncx(archive, path, ncx->second.name);
  }
  return {};
}

// ---------------------------------------------------------------------------------------------
// XHTML to text

bool is_skipped(std::string_view name) {
  return name == "script" || name == "style" || name == "head" || name == "template" ||
         name == "svg" || name == "math" || name == "noscript";
}

bool is_heading(std::string_view name) {
  return name.size() == 2 && name[0] == 'h' && name[1] >= '1' && name[1] <= '6';
}

// Newlines a block element puts around itself: paragraphs and the like get a blank line, other
// blocks a line of their own, inline elements none.
int block_breaks(std::string_view name) {
  static const std::set<std::string_view> kParagraphs = {
      "p",  "blockquote", "pre",   "hr",     "section", "article", "table", "figure", "ul",
      "ol", "dl",         "aside", "header", "footer",  "address", "main",  "nav",    "details"};
  static const std::set<std::string_view> kLines = {
      "div",  "li",     "dd",     "dt",     "tr",     "caption", "figcaption",
      "body", "thead",  "tbody",  "tfoot",  "center", "summary", "fieldset",
      "form", "legend", "hgroup", "dialog", "menu",   "dir"};
  if (is_heading(name) || kParagraphs.count(name) != 0) return 2;
  return kLines.count(name) != 0 ? 1 : 0;
}

// Builds the book's text: collapses whitespace as a browser would, turns blocks into line breaks,
// and resolves "marks" (anchor positions) to the offset of the next character written, so that a
// chapter starts at its first visible character.
class TextWriter {
 public:
  explicit TextWriter(std::string& out) : out_(out) {}

  std::size_t mark() {
    marks_.push_back(std::string::npos);
    unresolved_.push_back(marks_.size() - 1);
    return marks_.size() - 1;
  }
  std::size_t offset_of(std::size_t mark) const {
    return marks_[mark] == std::string::npos ? out_.size() : marks_[mark];
  }

  void block_break(int newlines) {
    pending_breaks_ = std::max(pending_breaks_, newlines);
    pending_space_ = false;
  }
  void line_break() {
    flush_breaks();
    resolve_marks();
    out_ += '\n';
    pending_space_ = false;
  }
  void soft_space() { pending_space_ = !out_.empty() && out_.back() != '\n'; }

  void text(std::string_view s, bool preformatted) {
    for (const char c : s) {
      const bool space = c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
      if (preformatted) {
        if (c == '\r') continue;
        flush_breaks();
        resolve_marks();
        out_ += c;
      } else if (space) {
        if (!out_.empty() && out_.back() != '\n' && pending_breaks_ == 0) pending_space_ = true;
      } else {
        flush_breaks();
        if (pending_space_) out_ += ' ';
        pending_space_ = false;
        resolve_marks();
        out_ += c;
      }
    }
  }

  void finish() {
    while (!out_.empty() && (out_.back() == ' ' || out_.back() == '\n')) out_.pop_back();
    if (!out_.empty()) out_ += '\n';
    // Marks that no character followed, or that pointed into the trimmed tail, end the text.
    unresolved_.clear();
    for (auto& m : marks_) m = std::min(m, out_.size());
  }

 private:
  void flush_breaks() {
    if (pending_breaks_ > 0 && !out_.empty()) {
      while (!out_.empty() && out_.back() == ' ') out_.pop_back();
      int have = 0;
      for (auto it = out_.rbegin(); it != out_.rend() && *it == '\n' && have < pending_breaks_;
           ++it) {
        ++have;
      }
      out_.append(static_cast<std::size_t>(pending_breaks_ - have), '\n');
      pending_space_ = false;
    }
    pending_breaks_ = 0;
  }
  void resolve_marks() {
    for (const std::size_t m : unresolved_) marks_[m] = out_.size();
    unresolved_.clear();
  }

  std::string& out_;
  std::vector<std::size_t> marks_;
  std::vector<std::size_t> unresolved_;
  int pending_breaks_ = 0;
  bool pending_space_ = false;
};

struct DocumentText {
  std::size_t start_mark = 0;
  std::map<std::string, std::size_t> id_marks;  // wanted element ids → marks
  std::string first_heading;
  std::string head_title;
};

class XhtmlWalker {
 public:
  XhtmlWalker(TextWriter& writer, DocumentText& document, const std::set<std::string>& wanted_ids)
      : writer_(writer), document_(document), wanted_ids_(wanted_ids) {}

  void walk(xmlNode* node, bool preformatted) {
    for (; node != nullptr; node = node->next) {
      switch (node->type) {
        case XML_TEXT_NODE:
        case XML_CDATA_SECTION_NODE:
          writer_.text(as_view(node->content), preformatted);
          break;
        case XML_ENTITY_REF_NODE:
          entity(node, preformatted);
          break;
        case XML_ELEMENT_NODE:
          element(node, preformatted);
          break;
        default:
          break;  // comments, processing instructions
      }
    }
  }

 private:
  // Without the XHTML DTD, which we never load, HTML's named entities (&nbsp;, &mdash;) reach us
  // as references; libxml2's HTML table gives their characters.
  void entity(xmlNode* node, bool preformatted) {
    if (const htmlEntityDesc* known = htmlEntityLookup(node->name)) {
      std::string utf8;
      append_utf8(utf8, static_cast<char32_t>(known->value));
      writer_.text(utf8, preformatted);
    } else if (const xmlEntity* declared = xmlGetDocEntity(node->doc, node->name);
               declared != nullptr && declared->etype == XML_INTERNAL_GENERAL_ENTITY) {
      writer_.text(as_view(declared->content), preformatted);
    }
  }

  void element(xmlNode* node, bool preformatted) {
    const std::string_view name = as_view(node->name);
    if (name == "head") {
      if (xmlNode* title = find_element(node->children, "title")) {
        document_.head_title = collapsed_text(title);
      }
      return;
    }
    if (is_skipped(name)) return;
    if (name == "br") {
      writer_.line_break();
      return;
    }
    const int breaks = block_breaks(name);
    if (breaks > 0) writer_.block_break(breaks);
    if (!wanted_ids_.empty()) {
      const std::string id = attribute(node, "id");
      if (!id.empty() && wanted_ids_.count(id) != 0 && document_.id_marks.count(id) == 0) {
        document_.id_marks[id] = writer_.mark();
      }
    }
    const bool heading = is_heading(name) && document_.first_heading.empty();
    if (heading) document_.first_heading = collapsed_text(node);
    walk(node->children, preformatted || name == "pre");
    if (name == "td" || name == "th") writer_.soft_space();
    if (breaks > 0) writer_.block_break(breaks);
  }

  TextWriter& writer_;
  DocumentText& document_;
  const std::set<std::string>& wanted_ids_;
};

bool is_xhtml(const ManifestItem& item) {
  return item.media_type == "application/xhtml+xml" || item.media_type == "text/html" ||
         item.media_type.empty();
}

}  // namespace

Book read_epub_book(const std::filesystem::path& path, const std::string& bytes,
                    const ProgressCallback& progress) {
  const auto started = std::chrono::steady_clock::now();
  const ZipArchive archive = ZipArchive::open_bytes(bytes, book_where(path), "EPUB");
  const Package package = read_package(archive, path);
  const std::vector<TocEntry> toc = read_table_of_contents(archive, path, package);

  std::map<std::string, std::set<std::string>> wanted_ids;  // document → fragment ids
  for (const auto& entry : toc) {
    if (!entry.fragment.empty()) wanted_ids[entry.target].insert(entry.fragment);
  }

  Book book;
  book.title = package.title;
  book.author = package.author;
  TextWriter writer(book.text);
  std::map<std::string, DocumentText> documents;  // by entry name, first spine occurrence
  std::vector<std::string> reading_order;
  const auto total = static_cast<std::int64_t>(package.spine.size());
  for (std::size_t i = 0; i < package.spine.size(); ++i) {
    const ManifestItem& item = package.manifest.at(package.spine[i]);
    if (!is_xhtml(item)) {
      book.warnings.push_back(book_where(path) + ": spine item '" + item.name + "' is " +
                              item.media_type + ", not XHTML; its content was left out");
      continue;
    }
    if (documents.count(item.name) != 0) continue;  // listed twice: read once
    const XmlDocument doc =
        parse_xml(path, item.name, archive.read(item.name, "spine document", kMaxEntryBytes),
                  "spine document");
    DocumentText& document = documents[item.name];
    reading_order.push_back(item.name);
    writer.block_break(2);
    document.start_mark = writer.mark();
    static const std::set<std::string> kNoIds;
    const auto wanted = wanted_ids.find(item.name);
    XhtmlWalker walker(writer, document, wanted == wanted_ids.end() ? kNoIds : wanted->second);
    walker.walk(xmlDocGetRootElement(doc.get()), false);
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    report_progress(progress, static_cast<std::int64_t>(i) + 1, total, elapsed, path);
  }
  writer.finish();
  require_some_text(book.text, path);

  auto& chapters = book.outline.chapters;
  if (!toc.empty()) {
    // Chapters are the two outermost levels of the table of contents, as for Markdown.
    for (const auto& entry : toc) {
      if (entry.depth > 2) continue;
      const auto document = documents.find(entry.target);
      if (document == documents.end()) {
        book.warnings.push_back(book_where(path) + ": table of contents entry '" + entry.title +
                                "' points to '" + entry.target +
                                "', which is not a spine document; no anchor for it");
        continue;
      }
      std::size_t offset = writer.offset_of(document->second.start_mark);
      if (!entry.fragment.empty()) {
        const auto id = document->second.id_marks.find(entry.fragment);
        if (id != document->second.id_marks.end()) offset = writer.offset_of(id->second);
      }
      chapters.push_back({entry.title, offset, entry.depth, 0});
    }
    std::stable_sort(
        chapters.begin(), chapters.end(),
        [](const BookChapter& a, const BookChapter& b) { return a.offset < b.offset; });
    // Tables of contents often list one target twice (a part and its first chapter keep both).
    chapters.erase(std::unique(chapters.begin(), chapters.end(),
                               [](const BookChapter& a, const BookChapter& b) {
                                 return a.offset == b.offset && a.title == b.title;
                               }),
                   chapters.end());
  }
  if (chapters.empty()) {
    // No table of contents, or none whose entries lead into the spine.
    for (const auto& name : reading_order) {
      const DocumentText& document = documents.at(name);
      const std::string& title =
          !document.first_heading.empty() ? document.first_heading : document.head_title;
      if (!title.empty()) chapters.push_back({title, writer.offset_of(document.start_mark), 1, 0});
    }
  }
  return book;
}

}  // namespace lwm::book_detail
