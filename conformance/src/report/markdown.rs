//! Requirement text is Markdown (the spec's): the reports render its inline marks instead
//! of showing backticks, asterisks and link syntax to the reader.

use super::html::esc;

/// Inline Markdown to HTML: `code`, **strong**, *emphasis*, [text](target) (the link text
/// only: spec-relative targets mean nothing in a report). Everything else is escaped.
pub fn inline(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if let Some(done) = code_span(rest, &mut out)
            .or_else(|| link(rest, &mut out))
            .or_else(|| marked(rest, "**", "b", &mut out))
            .or_else(|| marked(rest, "*", "i", &mut out))
        {
            rest = done;
            continue;
        }
        out.push_str(&esc(&c.to_string()));
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Inline Markdown to plain text (for terminals and `title` attributes).
pub fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if let Some((label, after)) = split_link(rest) {
            out.push_str(label);
            rest = after;
            continue;
        }
        if let Some(after) = rest.strip_prefix("**") {
            rest = after;
            continue;
        }
        if c != '`' {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

fn code_span<'a>(s: &'a str, out: &mut String) -> Option<&'a str> {
    let body = s.strip_prefix('`')?;
    let end = body.find('`')?;
    out.push_str("<code>");
    out.push_str(&esc(&body[..end]));
    out.push_str("</code>");
    Some(&body[end + 1..])
}

/// `[label](target)`: the label and what follows the link.
fn split_link(s: &str) -> Option<(&str, &str)> {
    let body = s.strip_prefix('[')?;
    let close = body.find("](")?;
    let label = &body[..close];
    if label.contains('[') || label.contains('\n') {
        return None;
    }
    let after = &body[close + 2..];
    let end = after.find(')')?;
    Some((label, &after[end + 1..]))
}

fn link<'a>(s: &'a str, out: &mut String) -> Option<&'a str> {
    let (label, after) = split_link(s)?;
    out.push_str(&inline(label));
    Some(after)
}

fn marked<'a>(s: &'a str, mark: &str, tag: &str, out: &mut String) -> Option<&'a str> {
    let body = s.strip_prefix(mark)?;
    // `a * b` or a lone `*` is not emphasis.
    if body.starts_with(' ') || body.starts_with('*') {
        return None;
    }
    let end = body.find(mark)?;
    if end == 0 || body[..end].contains('`') {
        return None;
    }
    out.push_str(&format!("<{tag}>{}</{tag}>", inline(&body[..end])));
    Some(&body[end + mark.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_links_and_strong_are_rendered() {
        assert_eq!(
            inline("set `seq` as [broadcast](broadcast.md) **BCAST-1** says <now>"),
            "set <code>seq</code> as broadcast <b>BCAST-1</b> says &lt;now&gt;"
        );
    }

    #[test]
    fn a_lone_star_stays() {
        assert_eq!(inline("a * b"), "a * b");
        assert_eq!(inline("`x*`"), "<code>x*</code>");
    }

    #[test]
    fn plain_drops_the_marks() {
        assert_eq!(
            plain("the `event` filter, [BCAST-1](broadcast.md) **now**"),
            "the event filter, BCAST-1 now"
        );
    }
}
