#include "flatmin/reports/html.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "flatmin/core/error.h"
#include "flatmin/core/runtime.h"

namespace flatmin::reports {
namespace {

namespace fs = std::filesystem;

const char* const kStyle = R"(
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #1d1d1f;
       background: #fff; margin: 0; }
main { max-width: 1280px; margin: 0 auto; padding: 20px 24px 48px; }
h1 { font-size: 28px; margin: 0 0 6px; }
h2 { font-size: 21px; margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 2px solid #e5e5ea; }
p.description { font-size: 16px; margin: 4px 0 8px; color: #333; }
p.meta { color: #555; margin: 2px 0; }
code { font: 13px/1.4 "DejaVu Sans Mono", Menlo, Consolas, monospace; background: #f2f2f5; padding: 1px 5px;
       border-radius: 4px; }
.headline { font-size: 17px; background: #eef5fc; border-left: 4px solid #1f77b4; padding: 10px 14px;
            margin: 14px 0; }
nav { margin: 10px 0 0; color: #555; }
nav a { margin-right: 14px; }
a { color: #0b62a8; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; margin: 8px 0 4px; font-size: 13.5px; }
th, td { padding: 4px 8px; border-bottom: 1px solid #e5e5ea; white-space: nowrap; }
th { background: #f5f5f7; text-align: left; font-weight: 600; border-bottom: 2px solid #d2d2d7; white-space: normal;
     vertical-align: bottom; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fafafc; }
tr.emphasized td { background: #fff6dc; font-weight: 600; }
td span.n { display: block; font-size: 11.5px; font-weight: normal; color: #777; line-height: 1.1; }
p.note { font-size: 13px; color: #555; margin: 2px 0; max-width: 1100px; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 18px 28px;
           margin-top: 16px; }
figure { margin: 0; }
figure svg, figure img { width: 100%; height: auto; display: block; }
figcaption { font-size: 13px; color: #444; margin-top: 2px; }
figcaption .files { white-space: nowrap; }
.missing { padding: 40px 12px; text-align: center; color: #888; border: 1px dashed #ccc; }
ul.warnings li { color: #8a4b00; }
details summary { cursor: pointer; font-weight: 600; margin: 8px 0; }
)";

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  check(in.good(), path.string() + ": cannot open");
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string base64(const std::string& bytes) {
  static const char* const digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const unsigned v = (static_cast<unsigned char>(bytes[i]) << 16) | (static_cast<unsigned char>(bytes[i + 1]) << 8) |
                       static_cast<unsigned char>(bytes[i + 2]);
    out += {digits[v >> 18], digits[(v >> 12) & 63], digits[(v >> 6) & 63], digits[v & 63]};
  }
  if (i + 1 == bytes.size()) {
    const unsigned v = static_cast<unsigned char>(bytes[i]) << 16;
    out += {digits[v >> 18], digits[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == bytes.size()) {
    const unsigned v = (static_cast<unsigned char>(bytes[i]) << 16) | (static_cast<unsigned char>(bytes[i + 1]) << 8);
    out += {digits[v >> 18], digits[(v >> 12) & 63], digits[(v >> 6) & 63], '='};
  }
  return out;
}

// A cell holding a number (or a dash for none) aligns right; names align left.
bool numeric(const std::string& cell) {
  return !cell.empty() && (std::isdigit(static_cast<unsigned char>(cell[0])) || cell[0] == '+' || cell[0] == '-' ||
                           cell.rfind("—", 0) == 0 || cell.rfind("✓", 0) == 0);
}

void write_table(std::ostringstream& html, const Table& t, bool with_title) {
  if (with_title) html << "<h2>" << html_escape(t.title) << "</h2>\n";
  html << "<div class=\"table-wrap\"><table>\n<thead><tr>";
  for (const std::string& h : t.header) html << "<th>" << html_escape(h) << "</th>";
  html << "</tr></thead>\n<tbody>\n";
  for (size_t r = 0; r < t.rows.size(); ++r) {
    html << (t.emphasized[r] ? "<tr class=\"emphasized\">" : "<tr>");
    for (size_t c = 0; c < t.rows[r].size(); ++c) {
      const std::string& cell = t.rows[r][c];
      html << (c > 0 && numeric(cell) ? "<td class=\"num\">" : "<td>");
      const size_t count = cell.find(" (n=");  // under the value, small: keeps the columns narrow
      if (count == std::string::npos) html << html_escape(cell);
      else html << html_escape(cell.substr(0, count)) << "<span class=\"n\">" << html_escape(cell.substr(count + 1)) << "</span>";
      html << "</td>";
    }
    html << "</tr>\n";
  }
  html << "</tbody></table></div>\n";
  for (const std::string& note : t.notes) html << "<p class=\"note\">" << html_escape(note) << "</p>\n";
}

void write_figure(std::ostringstream& html, const Figure& f, int number, const std::string& plots_dir,
                  const std::string& plots_href) {
  const std::string href = html_escape(plots_href + "/" + f.name);
  html << "<figure id=\"fig-" << html_escape(f.name) << "\">\n";
  const bool has_svg = std::find(f.images.begin(), f.images.end(), f.name + ".svg") != f.images.end();
  const bool has_png = std::find(f.images.begin(), f.images.end(), f.name + ".png") != f.images.end();
  if (has_svg) {
    html << inline_svg(read_file(fs::path(plots_dir) / (f.name + ".svg")), "f" + std::to_string(number) + "-") << '\n';
  } else if (has_png) {
    html << "<img alt=\"" << html_escape(f.caption) << "\" src=\"data:image/png;base64,"
         << base64(read_file(fs::path(plots_dir) / (f.name + ".png"))) << "\">\n";
  } else {
    html << "<div class=\"missing\">not drawn (see the warnings); run <code>gnuplot " << html_escape(f.name)
         << ".gp</code> in the plots folder</div>\n";
  }
  html << "<figcaption><b>Figure " << number << ".</b> " << html_escape(f.caption) << " <span class=\"files\">["
       << "<a href=\"" << href << ".gp\">.gp</a> · <a href=\"" << href << ".dat\">.dat</a>";
  if (has_png) html << " · <a href=\"" << href << ".png\">.png</a>";
  if (has_svg) html << " · <a href=\"" << href << ".svg\">.svg</a>";
  html << "]</span></figcaption>\n</figure>\n";
}

}  // namespace

std::string html_escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string inline_svg(const std::string& svg, const std::string& id_prefix) {
  const size_t start = svg.find("<svg");
  check(start != std::string::npos, "not an SVG document (no <svg element)");
  auto at = [&](size_t i, const char* pattern) { return svg.compare(i, std::char_traits<char>::length(pattern), pattern) == 0; };
  std::string out;
  out.reserve(svg.size() + svg.size() / 16);
  for (size_t i = start; i < svg.size();) {
    const bool attribute_start = i > 0 && std::isspace(static_cast<unsigned char>(svg[i - 1]));
    if (attribute_start && (at(i, "id='") || at(i, "id=\""))) {
      out.append(svg, i, 4).append(id_prefix);
      i += 4;
    } else if (at(i, "href='#") || at(i, "href=\"#")) {  // href and xlink:href
      out.append(svg, i, 7).append(id_prefix);
      i += 7;
    } else if (at(i, "url(#")) {
      out.append("url(#").append(id_prefix);
      i += 5;
    } else {
      out += svg[i++];
    }
  }
  while (!out.empty() && std::isspace(static_cast<unsigned char>(out.back()))) out.pop_back();
  return out;
}

std::string html_page(const Sweep& sweep, const Report& report, const std::vector<Table>& tables,
                      const std::vector<Figure>& figures, const std::string& plots_dir, const std::string& plots_href) {
  const std::string name = sweep.name.empty() ? "sweep" : sweep.name;
  std::ostringstream html;
  html << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
       << "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
       << "<title>flatmin report: " << html_escape(name) << "</title>\n<style>" << kStyle << "</style>\n</head>\n"
       << "<body>\n<main>\n<header>\n<h1>" << html_escape(name) << "</h1>\n";
  if (!sweep.description.empty()) html << "<p class=\"description\">" << html_escape(sweep.description) << "</p>\n";
  if (!sweep.command.empty()) html << "<p class=\"meta\">Command: <code>" << html_escape(sweep.command) << "</code></p>\n";
  if (!sweep.file.empty()) html << "<p class=\"meta\">Experiment file: <code>" << html_escape(sweep.file) << "</code></p>\n";
  int final_runs = 0, done = 0;
  for (const RunRecord& r : sweep.runs)
    if (r.has_role("final")) ++final_runs, done += r.done();
  html << "<p class=\"meta\">Sweep root: <code>" << html_escape(sweep.root) << "</code> · " << sweep.runs.size()
       << " runs, " << final_runs << " final (" << done << " done)";
  if (!sweep.select_metric.empty())
    html << " · settings chosen by " << html_escape(sweep.select_mode + " " + sweep.select_metric);
  html << " · drawn by " << html_escape(version_string()) << "</p>\n";
  if (!sweep.complete)
    html << "<p class=\"headline\">The sweep is not complete: runs remain to be planned or run; these numbers will "
            "change.</p>\n";
  html << "<nav>";
  for (const std::string& task : report.tasks)
    html << "<a href=\"#task-" << html_escape(file_stem(task)) << "\">" << html_escape(task) << "</a>";
  if (!sweep.selection.empty()) html << "<a href=\"#selection\">selection grid</a>";
  html << "</nav>\n</header>\n";

  // The summary first: the highlight sentence and its table.
  const std::string sentence = highlight_sentence(report);
  if (!sentence.empty()) {
    html << "<section id=\"summary\">\n<h2>Summary</h2>\n<p class=\"headline\">" << html_escape(sentence) << "</p>\n";
    for (const Table& t : tables)
      if (t.kind == TableKind::kComparison) write_table(html, t, false);
    html << "</section>\n";
  }
  int number = 0;
  for (const Table& t : tables) {
    if (t.kind != TableKind::kTask) continue;
    html << "<section id=\"task-" << html_escape(file_stem(t.task)) << "\">\n";
    write_table(html, t, true);
    for (const Table& gaps : tables)
      if ((gaps.kind == TableKind::kNoiseStability || gaps.kind == TableKind::kPaired) && gaps.task == t.task)
        write_table(html, gaps, true);
    html << "<div class=\"figures\">\n";
    for (const Figure& f : figures)
      if (f.task == t.task) write_figure(html, f, ++number, plots_dir, plots_href);
    html << "</div>\n</section>\n";
  }
  for (const Table& t : tables) {
    if (t.kind == TableKind::kSelection) {
      html << "<section id=\"selection\">\n";
      write_table(html, t, true);
      html << "</section>\n";
    }
  }
  std::vector<const RunRecord*> not_done;
  for (const RunRecord& r : sweep.runs)
    if (!r.done()) not_done.push_back(&r);
  if (!not_done.empty()) {
    html << "<section id=\"not-done\">\n<h2>Runs not done</h2>\n<details" << (not_done.size() <= 20 ? " open" : "") << "><summary>" << not_done.size()
         << " runs (failed, diverged, pending)</summary>\n<div class=\"table-wrap\"><table>\n<thead><tr><th>run</th>"
         << "<th>status</th><th>exit code</th><th>error</th></tr></thead>\n<tbody>\n";
    for (const RunRecord* r : not_done)
      html << "<tr><td>" << html_escape(r->id) << "</td><td>" << html_escape(r->status) << "</td><td class=\"num\">"
           << r->exit_code << "</td><td>" << html_escape(r->error) << "</td></tr>\n";
    html << "</tbody></table></div>\n</details>\n</section>\n";
  }
  if (!sweep.warnings.empty()) {
    html << "<section id=\"warnings\">\n<h2>Warnings</h2>\n<ul class=\"warnings\">\n";
    for (const std::string& w : sweep.warnings) html << "<li>" << html_escape(w) << "</li>\n";
    html << "</ul>\n</section>\n";
  }
  html << "</main>\n</body>\n</html>\n";
  return html.str();
}

}  // namespace flatmin::reports
