//! The rules of a narrative's XHTML that `htmlChecks()` tests (R4 `txt-1` and `txt-2`, FHIR
//! R4 narrative.html): well-formed XML whose root is a `div` in the XHTML namespace,
//! holding only the basic formatting elements of chapters 7-11 (but section 4 of chapter 9,
//! `ins`/`del`) and 15 of HTML 4.0 (but the deprecated ones), `a` and `img`, with their
//! attributes; no script, style sheet, form, frame, object, event attribute (`onclick`) or
//! script URL; and some non-whitespace content.
//!
//! Parsed by `roxmltree`: no DTD (so no entity but XML's own and character references), a
//! tree built without recursion, at most [`MAX_NODES`] nodes.

use roxmltree::{Document, Node, NodeType, ParsingOptions};

const XHTML: &str = "http://www.w3.org/1999/xhtml";
const XML: &str = "http://www.w3.org/XML/1998/namespace";

/// The most nodes (elements, attributes' owners, text runs) a narrative may have: past it, it
/// fails the checks rather than holding more memory.
pub const MAX_NODES: u32 = 1_000_000;

/// The elements a narrative may use.
#[rustfmt::skip]
const ELEMENTS: &[&str] = &[
    // Chapter 7: the body's structure.
    "div", "span", "h1", "h2", "h3", "h4", "h5", "h6", "address",
    // Chapter 8: bidirectional text.
    "bdo",
    // Chapter 9: phrases, quotations, sub- and superscripts, lines and paragraphs.
    "em", "strong", "dfn", "code", "samp", "kbd", "var", "cite", "abbr", "acronym",
    "blockquote", "q", "sub", "sup", "p", "br", "pre",
    // Chapter 10: lists.
    "ul", "ol", "li", "dl", "dt", "dd",
    // Chapter 11: tables.
    "table", "caption", "thead", "tfoot", "tbody", "colgroup", "col", "tr", "th", "td",
    // Chapter 15: the font styles and rules that are not deprecated.
    "tt", "i", "b", "big", "small", "hr",
    // Links and images.
    "a", "img",
];

/// The attributes any element may have (`xml:lang` too, in the XML namespace).
const COMMON_ATTRIBUTES: &[&str] = &["id", "class", "style", "title", "lang", "dir"];

/// The attributes of particular elements, beyond the common ones.
fn element_attributes(element: &str) -> &'static [&'static str] {
    const CELL: &[&str] = &["align", "valign", "char", "charoff"];
    match element {
        "a" => &[
            "href",
            "name",
            "rel",
            "rev",
            "hreflang",
            "type",
            "charset",
            "accesskey",
            "tabindex",
        ],
        "img" => &["src", "alt", "longdesc", "height", "width"],
        "blockquote" | "q" => &["cite"],
        "ol" => &["start", "type"],
        "ul" => &["type"],
        "li" => &["value", "type"],
        "table" => &[
            "summary",
            "width",
            "border",
            "frame",
            "rules",
            "cellspacing",
            "cellpadding",
            "align",
        ],
        "caption" | "p" | "div" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => &["align"],
        "col" | "colgroup" => &["span", "width", "align", "valign", "char", "charoff"],
        "thead" | "tbody" | "tfoot" | "tr" => CELL,
        "td" | "th" => &[
            "abbr", "axis", "headers", "scope", "rowspan", "colspan", "align", "valign", "char",
            "charoff", "width", "height", "nowrap",
        ],
        "hr" => &["align", "size", "width", "noshade"],
        "pre" => &["width"],
        "br" => &["clear"],
        _ => &[],
    }
}

/// The attributes whose value is a URL.
const URL_ATTRIBUTES: &[&str] = &["href", "src", "cite", "longdesc"];

/// Whether `xhtml` (a narrative's `div`, as FHIR JSON holds it) follows the rules; why not
/// otherwise.
pub fn check_narrative(xhtml: &str) -> Result<(), String> {
    let options = ParsingOptions {
        allow_dtd: false,
        nodes_limit: MAX_NODES,
        ..ParsingOptions::default()
    };
    let document =
        Document::parse_with_options(xhtml, options).map_err(|e| format!("not XHTML: {e}"))?;
    let root = document.root_element();
    if root.tag_name().name() != "div" || root.tag_name().namespace() != Some(XHTML) {
        return Err("the root element is not a div in the XHTML namespace".into());
    }
    let mut content = false;
    for node in root.descendants() {
        match node.node_type() {
            NodeType::Element => {
                check_element(node)?;
                content |= node.tag_name().name() == "img";
            }
            NodeType::Text => content |= node.text().is_some_and(|t| !t.trim().is_empty()),
            NodeType::PI => return Err("a processing instruction".into()),
            NodeType::Comment | NodeType::Root => {}
        }
    }
    if !content {
        return Err("no content but whitespace".into());
    }
    Ok(())
}

fn check_element(node: Node<'_, '_>) -> Result<(), String> {
    let name = node.tag_name().name();
    if node.tag_name().namespace() != Some(XHTML) || !ELEMENTS.contains(&name) {
        return Err(format!("the element <{name}> is not allowed"));
    }
    for attribute in node.attributes() {
        let attribute_name = attribute.name();
        let allowed = match attribute.namespace() {
            None => {
                COMMON_ATTRIBUTES.contains(&attribute_name)
                    || element_attributes(name).contains(&attribute_name)
            }
            Some(XML) => attribute_name == "lang",
            Some(_) => false,
        };
        if !allowed {
            return Err(format!(
                "the attribute {attribute_name} of <{name}> is not allowed"
            ));
        }
        let value = attribute.value();
        if URL_ATTRIBUTES.contains(&attribute_name) && !safe_url(name, value) {
            return Err(format!("<{name} {attribute_name}> runs a script: {value}"));
        }
        if attribute_name == "style" && !safe_style(value) {
            return Err(format!(
                "the style of <{name}> runs a script or imports a style sheet"
            ));
        }
    }
    Ok(())
}

/// Whether a URL is no script: not `javascript:` or `vbscript:`, and `data:` only for an
/// image's source, however it is cased or spaced (browsers drop whitespace and control
/// characters in a scheme).
fn safe_url(element: &str, url: &str) -> bool {
    let scheme: String = url
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .take_while(|c| *c != ':' && *c != '/' && *c != '?' && *c != '#')
        .collect::<String>()
        .to_ascii_lowercase();
    let rest = &url[url.find(':').map_or(url.len(), |at| at + 1)..];
    match scheme.as_str() {
        "javascript" | "vbscript" => !url.contains(':'),
        "data" => {
            !url.contains(':')
                || (element == "img"
                    && rest.trim_start().to_ascii_lowercase().starts_with("image/"))
        }
        _ => true,
    }
}

/// Whether an inline style runs no script (`expression(...)`, `javascript:`, `behavior`,
/// `-moz-binding`) and imports no style sheet (`@import`); a CSS escape (`\`) could hide
/// either, so none is allowed. Images (`background-image: url(tbl_bck1.png)`, as IG
/// narratives have) are allowed, as `img` is.
fn safe_style(style: &str) -> bool {
    let style: String = style
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .collect::<String>()
        .to_ascii_lowercase();
    ![
        "\\",
        "expression(",
        "javascript:",
        "vbscript:",
        "behavior",
        "-moz-binding",
        "@import",
    ]
    .iter()
    .any(|bad| style.contains(bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn div(inner: &str) -> String {
        format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{inner}</div>")
    }

    #[test]
    fn narratives_of_formatting_links_images_and_tables_pass() {
        for ok in [
            "Generated by <a href=\"https://github.com/synthetichealth/synthea\">Synthea</a>",
            "<p style=\"color: red\" xml:lang=\"en\">Lux &amp; <b>Marie</b>&#160;&lt;</p>",
            "<table border=\"1\"><tr><th scope=\"col\">a</th><td colspan=\"2\">b</td></tr></table>",
            "<ul><li>one</li></ul><!-- a comment --><br/><hr/>",
            "<img src=\"data:image/png;base64,AAAA\" alt=\"\"/>",
            "<td style=\"background-image: url(tbl_bck1.png); text-align: var(--x, left)\">x</td>",
            "<a href=\"#contained\">x</a><a name=\"here\">y</a><img src=\"Binary/1\"/>",
        ] {
            assert_eq!(check_narrative(&div(ok)), Ok(()), "{ok}");
        }
    }

    #[test]
    fn scripts_events_and_script_urls_fail() {
        for bad in [
            "<script>alert(1)</script>x",
            "<img src=\"x\" onerror=\"alert(1)\"/>",
            "<p onclick=\"alert(1)\">x</p>",
            "<a href=\"javascript:alert(1)\">x</a>",
            "<a href=\" JaVa&#x09;Script:alert(1)\">x</a>",
            "<a href=\"&#106;avascript:alert(1)\">x</a>",
            "<a href=\"data:text/html,&lt;script&gt;\">x</a>",
            "<img src=\"data:text/html;base64,AAAA\"/>",
            "<p style=\"width: expression(alert(1))\">x</p>",
            "<p style=\"background: url( JavaScript:alert(1))\">x</p>",
            "<p style=\"background: \\75 rl(x)\">x</p>",
            "<iframe src=\"https://example.org\"></iframe>x",
            "<form><input/></form>x",
            "<object data=\"x\"></object>x",
            "<font color=\"red\">deprecated</font>",
            "<svg:svg xmlns:svg=\"http://www.w3.org/2000/svg\"><svg:script/></svg:svg>x",
            "<a xmlns:xlink=\"http://www.w3.org/1999/xlink\" xlink:href=\"x\">x</a>",
            "<?xml-stylesheet href=\"x\"?>x",
        ] {
            assert!(check_narrative(&div(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_a_well_formed_xhtml_div_with_content_passes() {
        for bad in [
            "<div>no namespace</div>".to_string(),
            "<p xmlns=\"http://www.w3.org/1999/xhtml\">not a div</p>".to_string(),
            div("<p>unclosed"),
            div("&nbsp; is no XML entity"),
            div("  \n "),
            div("<p> </p>"),
            "<!DOCTYPE div [<!ENTITY a \"aaaa\">]><div xmlns=\"http://www.w3.org/1999/xhtml\">&a;</div>".to_string(),
            "text".to_string(),
            String::new(),
        ] {
            assert!(check_narrative(&bad).is_err(), "{bad}");
        }
        // Deep nesting is no danger: the tree is built without recursion.
        let deep = div(&format!(
            "{}x{}",
            "<b>".repeat(50_000),
            "</b>".repeat(50_000)
        ));
        assert_eq!(check_narrative(&deep), Ok(()));
    }
}
