//! Text that cannot break an output: one escaper per sink.
//!
//! Labels, scenario names, notes and error texts reach every output iostudy writes, and
//! they come from study files, results directories (which may come from anywhere) and
//! the stderr of external tools. Each sink has its own syntax, so each has its own
//! escaper here: the terminal (control characters — ANSI and OSC sequences, newlines in
//! a table cell — shown escaped), Markdown table cells, CSV fields, XML/SVG text.
//! HTML is escaped by the template engine, and JSON embedded in HTML by
//! [`crate::report::html::json_for_html`].

use std::borrow::Cow;

/// `s` with every control character written as a visible escape (`\n`, `\t`, `\e`,
/// `\u{9b}`…): a single line of plain text.
pub fn printable(s: &str) -> Cow<'_, str> {
    escape_controls(s, false)
}

/// Text for a terminal: control characters escaped as [`printable`] does, but for the
/// newlines and tabs that lay out a multi-line text.
pub fn terminal(s: &str) -> Cow<'_, str> {
    escape_controls(s, true)
}

fn escape_controls(s: &str, keep_layout: bool) -> Cow<'_, str> {
    let is_bad = |c: char| c.is_control() && !(keep_layout && (c == '\n' || c == '\t'));
    if !s.chars().any(is_bad) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !is_bad(c) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x1b' => out.push_str("\\e"),
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    Cow::Owned(out)
}

/// A Markdown table cell: one line, and nothing Markdown or the HTML it may be rendered
/// as would read as syntax (`|`, emphasis, code, links, tags).
pub fn markdown_cell(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in printable(s).chars() {
        match c {
            '|' | '\\' | '*' | '_' | '`' | '[' | ']' | '#' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            c => out.push(c),
        }
    }
    out
}

/// A CSV field (RFC 4180): quoted when it holds a separator, a quote or a line break;
/// text that a spreadsheet would run as a formula (`=`, `+`, `-`, `@` first) is
/// prefixed with `'`. Numbers are written as they are.
pub fn csv_field(s: &str) -> String {
    let looks_numeric = s.parse::<f64>().is_ok();
    let mut v = printable(s).into_owned();
    if !looks_numeric && v.starts_with(['=', '+', '-', '@']) {
        v.insert(0, '\'');
    }
    if v.contains([',', '"', '\n', '\r']) { format!("\"{}\"", v.replace('"', "\"\"")) } else { v }
}

/// Text inside an XML (SVG) element or attribute.
pub fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in printable(s).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "a\nb\x1b[31mred\x1b]0;title\x07|x<!--<script>&\"'=1";

    #[test]
    fn each_sink_gets_text_it_cannot_misread() {
        let p = printable(HOSTILE);
        assert!(!p.chars().any(char::is_control), "{p}");
        assert!(p.starts_with("a\\nb\\e[31mred\\e]0;title\\u{7}|"), "{p}");
        assert_eq!(terminal("two\nlines\x1b[0m"), "two\nlines\\e[0m");
        let md = markdown_cell(HOSTILE);
        assert!(!md.contains(['\n', '<']) && md.contains("\\|x&lt;!--&lt;script&gt;&amp;"), "{md}");
        let csv = csv_field("=HYPERLINK(\"x\")");
        assert_eq!(csv, "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("-1.5"), "-1.5");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        let x = xml(HOSTILE);
        assert!(roxmltree::Document::parse(&format!("<t a=\"{x}\">{x}</t>")).is_ok(), "{x}");
    }
}
