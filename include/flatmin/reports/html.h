#pragma once
/// index.html: one self-contained page (inline CSS, figures inlined as SVG, no JavaScript, no network).

#include <string>
#include <vector>

#include "flatmin/reports/aggregate.h"
#include "flatmin/reports/plots.h"
#include "flatmin/reports/tables.h"

namespace flatmin::reports {

/// `text` with & < > " ' as character references: safe as element content and inside quoted attributes.
std::string html_escape(const std::string& text);

/// An SVG file's text made embeddable in HTML: everything before `<svg` (XML prolog, DOCTYPE, comments)
/// dropped, and every id and reference to one (href="#…", url(#…)) prefixed with `id_prefix`, so that
/// several inline figures from the same program (gnuplot names its markers gpPt0, gpDot, …) cannot clash.
/// Throws flatmin::Error when there is no <svg element.
std::string inline_svg(const std::string& svg, const std::string& id_prefix);

/// The page: the experiment, the highlight summary, each task's table with its figures, the selection grid,
/// the runs not done and the warnings. Figures are read from `plots_dir` (SVG inlined; PNG embedded as a
/// data URI when there is no SVG) and linked (.gp, .dat, .png) under the relative URL `plots_href`.
std::string html_page(const Sweep& sweep, const Report& report, const std::vector<Table>& tables,
                      const std::vector<Figure>& figures, const std::string& plots_dir, const std::string& plots_href);

}  // namespace flatmin::reports
