//! Full-text search: `_text` searches a resource's narrative, `_content` all of its text.
//!
//! Indexing: [`Text::of`] takes the texts of a resource; the index analyses them with
//! [`analyzer`] into words (runs of letters and digits, lower case, Latin letters folded to
//! ASCII: `Müller` is `muller`; NFC first, so combining accents fold too; words over 64 bytes
//! dropped), keeping their positions so that phrases match. Each document has two such TEXT
//! fields, `narrative` and `content`, with positions and not stored. Each JSON string is a
//! value of its own, so a phrase never spans two of them.
//!
//! What `_content` covers: every JSON string of the resource except those that are no text a
//! person searches for ([`NOT_TEXT`]): ids and bookkeeping (`id`, `versionId`, `lastUpdated`,
//! `resourceType`), references and URIs (`reference`, `system`, `url`, `profile`) and binary
//! data (`data`, `hash`, `valueBase64Binary`), and dates ([`is_date`]: a third of the words of
//! Synthea's resources, all numbers, which date parameters search better). Codes, displays,
//! `CodeableConcept.text`, names, addresses and identifier values are in; numbers and booleans
//! are not. A Narrative gives the text of its XHTML (not its markup, nor its status), for
//! `_text` and `_content`.
//!
//! Searching: a value is FHIR's text-search syntax, parsed here ([`parse`]); a client's text
//! never reaches tantivy's query parser. Words must all appear (`AND` between them is
//! optional), `"a phrase"` must appear as written, `OR` joins alternatives and binds looser
//! than `AND`, parentheses group. `AND` and `OR` are operators in any case (R4's own example
//! is `(bone OR liver) and metastases`); quoted, they are words. The query's words go through
//! the same analyzer (less the length limit: a longer word matches nothing), so index and
//! query agree. No modifiers and no `_sort`; a malformed value is a 400 like any other.

use serde_json::Value;
use tantivy::Term;
use tantivy::query::{BooleanQuery, PhraseQuery, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, TextFieldIndexing, TextOptions};
use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer,
    TextAnalyzerBuilder, Tokenizer, TokenizerManager,
};
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};

/// The parameter that searches the narrative.
pub const TEXT: &str = "_text";
/// The parameter that searches all the text of a resource.
pub const CONTENT: &str = "_content";

/// What a full-text parameter searches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The narrative (`_text`).
    Narrative,
    /// All the text, the narrative's included (`_content`).
    Content,
}

impl Source {
    /// What the parameter `code` searches, when it is a full-text parameter.
    pub fn of(code: &str) -> Option<Source> {
        match code {
            TEXT => Some(Source::Narrative),
            CONTENT => Some(Source::Content),
            _ => None,
        }
    }
}

/// The name of [`analyzer`] in the index.
const TOKENIZER: &str = "fhirlake_words";

/// The longest word indexed, in bytes (after folding). Longer runs of letters and digits are
/// not words anyone types (encoded data, tokens) and would only grow the index.
const WORD_MAX: usize = 64;

/// Words as the index holds them: runs of letters and digits, lower case, Latin letters
/// folded to ASCII (`é` is `e`, `ß` is `ss`).
fn words() -> TextAnalyzerBuilder<impl Tokenizer> {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
}

/// The analyzer of the full-text fields: [`words`] of at most [`WORD_MAX`] bytes.
fn analyzer() -> TextAnalyzer {
    words()
        .filter(RemoveLongFilter::limit(WORD_MAX + 1))
        .build()
}

/// Registers [`analyzer`] in an index's `tokenizers`: needed before any document is added.
pub fn register(tokenizers: &TokenizerManager) {
    tokenizers.register(TOKENIZER, analyzer());
}

/// How a full-text field is indexed: by [`analyzer`], with positions (for phrases), not stored.
pub fn field_options() -> TextOptions {
    TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(TOKENIZER)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    )
}

/// `text` in Unicode's composed form (NFC), so that an accent written as a combining mark
/// folds like a precomposed one (the tokenizer would split a word at the mark).
fn compose(text: String) -> String {
    if is_nfc_quick(text.chars()) == IsNormalized::Yes {
        text
    } else {
        text.nfc().collect()
    }
}

/// What full-text search indexes of one resource. Every text is composed ([`compose`]).
#[derive(Debug, Default, PartialEq)]
pub struct Text {
    /// The text of the resource's narrative, when it has some: what `_text` searches.
    pub narrative: Option<String>,
    /// Every other text, one per JSON string (the narratives of contained resources among
    /// them): `_content` searches these and the narrative.
    pub other: Vec<String>,
}

impl Text {
    /// The texts of `resource`.
    pub fn of(resource: &Value) -> Text {
        let mut text = Text::default();
        for (name, value) in resource.as_object().into_iter().flatten() {
            if name == "text" {
                text.narrative = narrative(value);
            } else {
                strings(name, value, &mut text.other);
            }
        }
        text
    }
}

/// The JSON members whose strings are not searchable text (see the module's documentation).
const NOT_TEXT: &[&str] = &[
    "resourceType",
    "id",
    "versionId",
    "lastUpdated",
    "reference",
    "system",
    "url",
    "profile",
    "data",
    "hash",
    "valueBase64Binary",
];

/// Appends the searchable strings of `value`, the value of the member `name`.
fn strings(name: &str, value: &Value, out: &mut Vec<String>) {
    if NOT_TEXT.contains(&name) {
        return;
    }
    match value {
        Value::String(text) if !is_date(text) => out.push(compose(text.clone())),
        Value::Array(items) => items.iter().for_each(|item| strings(name, item, out)),
        // A `text` object is a Narrative (every other `text` element is a string).
        Value::Object(_) if name == "text" => out.extend(narrative(value)),
        Value::Object(members) => members.iter().for_each(|(n, v)| strings(n, v, out)),
        Value::String(_) | Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Whether `text` has the shape of a FHIR date to the month or day, dateTime or instant
/// (`2019-06`, `2019-06-01`, `2019-06-01T10:07:32-04:00`). A bare year (`2019`) is not taken
/// for one: four digits may be a code.
fn is_date(text: &str) -> bool {
    let b = text.as_bytes();
    let shaped = match b.len() {
        7 => b[4] == b'-',
        10 => b[4] == b'-' && b[7] == b'-',
        n if n > 10 => b[4] == b'-' && b[7] == b'-' && b[10] == b'T',
        _ => false,
    };
    shaped
        && b[..4].iter().all(u8::is_ascii_digit)
        && b.iter()
            .all(|c| c.is_ascii_digit() || b"-:T.+Z".contains(c))
}

/// The text of a Narrative's XHTML `div`; None when it has no text.
fn narrative(narrative: &Value) -> Option<String> {
    let text = xhtml_text(narrative.get("div")?.as_str()?);
    (!text.trim().is_empty()).then(|| compose(text))
}

/// The elements that run inside a word's line (`<b>Hyper</b>tension` is one word); any other
/// tag separates words.
const INLINE: &[&str] = &[
    "a", "abbr", "b", "big", "cite", "code", "dfn", "em", "i", "kbd", "q", "s", "samp", "small",
    "span", "strike", "strong", "sub", "sup", "tt", "u", "var",
];

/// The text of XHTML: tags and comments removed (each tag other than an inline element's is a
/// space), character references decoded. Malformed markup loses text, never panics.
fn xhtml_text(xhtml: &str) -> String {
    let mut out = String::with_capacity(xhtml.len());
    let mut rest = xhtml;
    while let Some(start) = rest.find('<') {
        decode(&rest[..start], &mut out);
        let (tag, after) = markup(&rest[start..]);
        if !is_inline(tag) {
            out.push(' ');
        }
        rest = after;
    }
    decode(rest, &mut out);
    out
}

/// Splits `text`, which starts with `<`, into the inside of its tag (empty for a comment) and
/// what follows; unterminated markup runs to the end. A `>` inside a quoted attribute value
/// does not end the tag.
fn markup(text: &str) -> (&str, &str) {
    if let Some(comment) = text.strip_prefix("<!--") {
        let after = comment.find("-->").map_or("", |end| &comment[end + 3..]);
        return ("", after);
    }
    let mut quote = None;
    for (at, c) in text.char_indices().skip(1) {
        match (quote, c) {
            (None, '>') => return (&text[1..at], &text[at + 1..]),
            (None, '"' | '\'') => quote = Some(c),
            (Some(open), _) if c == open => quote = None,
            _ => {}
        }
    }
    (&text[1..], "")
}

/// Whether the tag `tag` (its inside, `b` or `/b` or `span class="x"`) is an inline element's.
fn is_inline(tag: &str) -> bool {
    let name = tag
        .trim_start_matches('/')
        .split(|c: char| c.is_whitespace() || c == '/')
        .next()
        .unwrap_or("");
    INLINE
        .iter()
        .any(|inline| inline.eq_ignore_ascii_case(name))
}

/// Appends `text` with its character references decoded (XML's five, `&nbsp;`, `&#233;`,
/// `&#xE9;`); an `&` that starts none of them is kept as written.
fn decode(text: &str, out: &mut String) {
    let mut rest = text;
    while let Some(start) = rest.find('&') {
        out.push_str(&rest[..start]);
        rest = &rest[start + 1..];
        match reference(rest) {
            Some((c, length)) => {
                out.push(c);
                rest = &rest[length..];
            }
            None => out.push('&'),
        }
    }
    out.push_str(rest);
}

/// The character of the reference at the start of `text` (just after its `&`), and the
/// reference's length with its `;`.
fn reference(text: &str) -> Option<(char, usize)> {
    let end = text.bytes().take(12).position(|b| b == b';')?;
    let name = &text[..end];
    let c = match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => '\u{a0}',
        _ => {
            let number = name.strip_prefix('#')?;
            let code = match number.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16),
                None => number.parse(),
            };
            char::from_u32(code.ok()?)?
        }
    };
    Some((c, end + 1))
}

/// A parsed full-text query. Invariant: every phrase and every list is non-empty.
#[derive(Debug, Clone, PartialEq)]
enum Expr {
    /// Words, as the index holds them, one right after another (one word: anywhere).
    Phrase(Vec<String>),
    /// Every part matches.
    All(Vec<Expr>),
    /// At least one part matches.
    Any(Vec<Expr>),
}

/// The query of the full-text search value `value` on `field` (indexed with
/// [`field_options`]); an error says what is wrong with the value.
pub fn query(field: Field, value: &str) -> Result<Box<dyn Query>, String> {
    Ok(build(field, &parse(value)?))
}

fn build(field: Field, expr: &Expr) -> Box<dyn Query> {
    let term = |word: &String| Term::from_field_text(field, word);
    let each = |parts: &[Expr]| -> Vec<Box<dyn Query>> {
        parts.iter().map(|part| build(field, part)).collect()
    };
    match expr {
        Expr::Phrase(words) => match words.as_slice() {
            [word] => Box::new(TermQuery::new(term(word), IndexRecordOption::Basic)),
            _ => Box::new(PhraseQuery::new(words.iter().map(term).collect())),
        },
        Expr::All(parts) => Box::new(BooleanQuery::intersection(each(parts))),
        Expr::Any(parts) => Box::new(BooleanQuery::union(each(parts))),
    }
}

/// Parses FHIR's text-search syntax (see the module's documentation). A word or phrase
/// without letters or digits is left out (`cancer +++` is `cancer`); an unquoted word of
/// several ([`words`]: `heart-rate`) is a phrase.
fn parse(text: &str) -> Result<Expr, String> {
    let mut parser = Parser {
        lexemes: lex(text)?,
        at: 0,
        words: words().build(),
    };
    let expr = parser.any(0)?;
    if parser.peek().is_some() {
        return Err("a ')' closes no '('".into());
    }
    expr.ok_or_else(|| "no words to search for".into())
}

/// One piece of a query's text.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Lexeme<'a> {
    Open,
    Close,
    And,
    Or,
    Quoted(&'a str),
    Word(&'a str),
}

fn lex(text: &str) -> Result<Vec<Lexeme<'_>>, String> {
    let mut lexemes = Vec::new();
    let mut rest = text.trim_start();
    while let Some(first) = rest.chars().next() {
        let (lexeme, length) = match first {
            '(' => (Lexeme::Open, 1),
            ')' => (Lexeme::Close, 1),
            '"' => {
                let end = rest[1..].find('"').ok_or("a double quote is not closed")?;
                (Lexeme::Quoted(&rest[1..=end]), end + 2)
            }
            _ => {
                let end = rest
                    .find(|c: char| c.is_whitespace() || "()\"".contains(c))
                    .unwrap_or(rest.len());
                let word = &rest[..end];
                let lexeme = if word.eq_ignore_ascii_case("and") {
                    Lexeme::And
                } else if word.eq_ignore_ascii_case("or") {
                    Lexeme::Or
                } else {
                    Lexeme::Word(word)
                };
                (lexeme, end)
            }
        };
        lexemes.push(lexeme);
        rest = rest[length..].trim_start();
    }
    Ok(lexemes)
}

/// The deepest nesting of parentheses parsed (the parser recurses once per level).
const DEPTH_MAX: usize = 32;

/// A recursive-descent parser over lexemes: `any := all (OR all)*`,
/// `all := term ([AND] term)*`, `term := ( any ) | "phrase" | word`. Each rule returns None
/// when its terms have no words.
struct Parser<'a> {
    lexemes: Vec<Lexeme<'a>>,
    at: usize,
    /// [`words`] without the index's length limit: a longer word is kept, and matches nothing.
    words: TextAnalyzer,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<Lexeme<'a>> {
        self.lexemes.get(self.at).copied()
    }

    fn any(&mut self, depth: usize) -> Result<Option<Expr>, String> {
        let mut parts = vec![self.all(depth)?];
        while self.peek() == Some(Lexeme::Or) {
            self.at += 1;
            parts.push(self.all(depth)?);
        }
        Ok(combine(parts.into_iter().flatten().collect(), Expr::Any))
    }

    fn all(&mut self, depth: usize) -> Result<Option<Expr>, String> {
        let mut parts = Vec::new();
        let mut needs_term = true;
        loop {
            match self.peek() {
                Some(Lexeme::And) if !needs_term => {
                    self.at += 1;
                    needs_term = true;
                    continue;
                }
                Some(Lexeme::Open) => {
                    self.at += 1;
                    parts.extend(self.group(depth + 1)?);
                }
                Some(Lexeme::Quoted(text) | Lexeme::Word(text)) => {
                    self.at += 1;
                    parts.extend(self.phrase(text));
                }
                _ if needs_term => return Err(self.missing_term()),
                _ => break,
            }
            needs_term = false;
        }
        Ok(combine(parts, Expr::All))
    }

    /// The inside of parentheses, after the `(`.
    fn group(&mut self, depth: usize) -> Result<Option<Expr>, String> {
        if depth > DEPTH_MAX {
            return Err(format!("parentheses nest deeper than {DEPTH_MAX} levels"));
        }
        let inner = self.any(depth)?;
        if self.peek() != Some(Lexeme::Close) {
            return Err("a '(' is not closed".into());
        }
        self.at += 1;
        Ok(inner)
    }

    fn phrase(&mut self, text: &str) -> Option<Expr> {
        let mut words = Vec::new();
        self.words
            .token_stream(&compose(text.to_string()))
            .process(&mut |token| words.push(token.text.clone()));
        (!words.is_empty()).then_some(Expr::Phrase(words))
    }

    /// Why a term was expected where the parser stands and is not there. Only the start, a
    /// `(`, `OR` or `AND` come before that place.
    fn missing_term(&self) -> String {
        let before = self.at.checked_sub(1).map(|at| self.lexemes[at]);
        match (before, self.peek()) {
            (Some(Lexeme::And | Lexeme::Or), _) | (_, Some(Lexeme::And | Lexeme::Or)) => {
                "AND and OR need a term on each side (quote them to search for the words)".into()
            }
            (None, None) => "nothing to search for".into(),
            (Some(Lexeme::Open), Some(Lexeme::Close)) => "empty parentheses".into(),
            (Some(Lexeme::Open), None) => "a '(' is not closed".into(),
            _ => "a ')' closes no '('".into(),
        }
    }
}

/// `parts` joined by `join`: None when there are none, the part itself when it is alone.
fn combine(mut parts: Vec<Expr>, join: fn(Vec<Expr>) -> Expr) -> Option<Expr> {
    match parts.len() {
        0 => None,
        1 => parts.pop(),
        _ => Some(join(parts)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    use tantivy::collector::DocSetCollector;
    use tantivy::schema::Schema;
    use tantivy::tokenizer::TokenStream;
    use tantivy::{Index, IndexWriter, TantivyDocument};

    /// An in-RAM index with one full-text field; document `n` holds the texts `docs[n]`, each
    /// a value of its own.
    fn index_of(docs: &[Vec<String>]) -> (Index, Field) {
        let mut schema = Schema::builder();
        let field = schema.add_text_field("content", field_options());
        let index = Index::create_in_ram(schema.build());
        register(index.tokenizers());
        let mut writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
        for texts in docs {
            let mut doc = TantivyDocument::new();
            for text in texts {
                doc.add_text(field, text);
            }
            writer.add_document(doc).unwrap();
        }
        writer.commit().unwrap();
        (index, field)
    }

    /// The numbers of the documents `value` matches.
    fn matching(index: &Index, field: Field, value: &str) -> Vec<u32> {
        let query = query(field, value).unwrap();
        let searcher = index.reader().unwrap().searcher();
        let mut found: Vec<u32> = searcher
            .search(&query, &DocSetCollector)
            .unwrap()
            .into_iter()
            .map(|address| address.doc_id)
            .collect();
        found.sort();
        found
    }

    fn phrase(words: &[&str]) -> Expr {
        Expr::Phrase(words.iter().map(|w| w.to_string()).collect())
    }

    #[test]
    fn narratives_lose_their_markup_and_decode_references() {
        assert_eq!(
            xhtml_text("<div xmlns=\"http://www.w3.org/1999/xhtml\">Care <b>Plan</b>.<br/>x</div>"),
            " Care Plan. x "
        );
        assert_eq!(
            xhtml_text("<p>Hyper<i>tension</i></p><p>next</p>"),
            " Hypertension  next "
        );
        assert_eq!(
            xhtml_text("a &lt;b&gt; &amp;amp; &#233;&#xE9; &nbsp; &bogus; & x"),
            "a <b> &amp; éé \u{a0} &bogus; & x"
        );
        assert_eq!(
            xhtml_text("a<!-- <b>hidden</b> -->b<a title=\"1>2\">c</a>"),
            "a bc"
        );
        // Malformed markup loses text but never panics.
        assert_eq!(xhtml_text("a <unterminated"), "a  ");
        assert_eq!(xhtml_text("a <!-- open"), "a  ");
        assert_eq!(
            xhtml_text("&#xFFFFFFFF; &#55296; &"),
            "&#xFFFFFFFF; &#55296; &"
        );
    }

    #[test]
    fn the_content_is_every_string_but_ids_references_uris_and_data() {
        let resource = json!({
            "resourceType": "Condition",
            "id": "c1",
            "meta": {"versionId": "1", "lastUpdated": "2020-01-01T00:00:00Z",
                     "profile": ["http://example.org/p"]},
            "text": {"status": "generated", "div": "<div>Acute <b>bronchitis</b></div>"},
            "contained": [{"resourceType": "Basic", "id": "b",
                           "text": {"status": "generated", "div": "<div>inner</div>"}}],
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "10509002",
                                 "display": "Acute bronchitis (disorder)"}],
                     "text": "Acute bronchitis"},
            "subject": {"reference": "Patient/p1", "display": "Mr. Müller"},
            "note": [{"text": "seen"}],
            "extension": [{"url": "http://example.org/x", "valueBase64Binary": "AAAA"},
                          {"url": "http://example.org/y", "valueString": "kept"}],
            "onsetAge": {"value": 3, "unit": "a"},
            "recordedDate": "2019-06-01T10:07:32-04:00",
            "identifier": [{"value": "2019"}, {"value": "8867-4"}],
            "abatementBoolean": true,
        });
        let mut text = Text::of(&resource);
        assert_eq!(text.narrative.as_deref(), Some(" Acute bronchitis "));
        text.other.sort();
        assert_eq!(
            text.other,
            [
                " inner ",
                "10509002",
                "2019",
                "8867-4",
                "Acute bronchitis",
                "Acute bronchitis (disorder)",
                "Mr. Müller",
                "a",
                "kept",
                "seen",
            ]
        );
        assert_eq!(
            Text::of(&json!({"text": {"div": "<div> </div>"}})),
            Text::default()
        );
        // A combining accent is composed.
        let text = Text::of(&json!({"name": [{"family": "Mu\u{308}ller"}]}));
        assert_eq!(text.other, ["M\u{fc}ller"]);
    }

    #[test]
    fn dates_are_told_from_codes() {
        for date in [
            "2019-06",
            "2019-06-01",
            "2019-06-01T10:07:32Z",
            "2019-06-01T10:07:32.5+02:00",
        ] {
            assert!(is_date(date), "{date}");
        }
        for text in [
            "2019",
            "8867-4",
            "12345-6",
            "2019-06-01 note",
            "2019/06/01",
            "é",
        ] {
            assert!(!is_date(text), "{text}");
        }
    }

    #[test]
    fn queries_are_words_phrases_and_or_and_groups() {
        let all = |parts: Vec<Expr>| Expr::All(parts);
        let any = |parts: Vec<Expr>| Expr::Any(parts);
        assert_eq!(parse("Cancer").unwrap(), phrase(&["cancer"]));
        assert_eq!(
            parse(" bone  LIVER ").unwrap(),
            all(vec![phrase(&["bone"]), phrase(&["liver"])])
        );
        assert_eq!(
            parse("bone AND liver").unwrap(),
            parse("bone liver").unwrap()
        );
        assert_eq!(
            parse("a b OR c").unwrap(),
            any(vec![
                all(vec![phrase(&["a"]), phrase(&["b"])]),
                phrase(&["c"])
            ])
        );
        assert_eq!(
            parse("(bone OR liver) and metastases").unwrap(),
            all(vec![
                any(vec![phrase(&["bone"]), phrase(&["liver"])]),
                phrase(&["metastases"])
            ])
        );
        assert_eq!(
            parse("\"Acute  Bronchitis\"").unwrap(),
            phrase(&["acute", "bronchitis"])
        );
        assert_eq!(parse("heart-rate").unwrap(), phrase(&["heart", "rate"]));
        assert_eq!(
            parse("\"or\" \"AND\"").unwrap(),
            all(vec![phrase(&["or"]), phrase(&["and"])])
        );
        assert_eq!(
            parse("Ångström Straße").unwrap(),
            all(vec![phrase(&["angstrom"]), phrase(&["strasse"])])
        );
        // Terms without letters or digits are left out.
        assert_eq!(parse("C ++ \"\" (-)").unwrap(), phrase(&["c"]));
        assert_eq!(
            parse("a\"b c\"").unwrap(),
            all(vec![phrase(&["a"]), phrase(&["b", "c"])])
        );
    }

    #[test]
    fn malformed_queries_say_what_is_wrong() {
        for (value, error) in [
            ("", "nothing to search for"),
            ("   ", "nothing to search for"),
            ("+++", "no words to search for"),
            ("\"open", "a double quote is not closed"),
            ("(a OR b", "a '(' is not closed"),
            ("(", "a '(' is not closed"),
            ("a)", "a ')' closes no '('"),
            (")", "a ')' closes no '('"),
            ("()", "empty parentheses"),
            ("a OR", "AND and OR need a term on each side"),
            ("OR a", "AND and OR need a term on each side"),
            ("a AND AND b", "AND and OR need a term on each side"),
            ("a AND OR b", "AND and OR need a term on each side"),
            ("(a OR)", "AND and OR need a term on each side"),
            ("and", "AND and OR need a term on each side"),
        ] {
            let reason = parse(value).unwrap_err();
            assert!(reason.starts_with(error), "{value:?}: {reason}");
        }
        let deep = format!("{}a{}", "(".repeat(100_000), ")".repeat(100_000));
        assert!(parse(&deep).unwrap_err().contains("nest deeper"));
        let nested = format!("{}a{}", "(".repeat(DEPTH_MAX), ")".repeat(DEPTH_MAX));
        assert_eq!(parse(&nested).unwrap(), phrase(&["a"]));
    }

    #[test]
    fn matching_ignores_case_and_accents_and_keeps_phrases_within_one_text() {
        let docs: Vec<Vec<String>> = [
            vec!["Acute bronchitis (disorder)", "Mr. MÜLLER"],
            vec!["Chronic bronchitis", "acute pain"],
            vec!["Mu\u{308}ller"],
        ]
        .iter()
        .map(|texts| Text::of(&json!({"x": texts})).other)
        .collect();
        let (index, field) = index_of(&docs);
        let find = |value: &str| matching(&index, field, value);
        assert_eq!(find("BRONCHITIS"), [0, 1]);
        assert_eq!(find("\"acute bronchitis\""), [0]);
        // "acute" and "bronchitis" are both in 1, but not one after the other in one text.
        assert_eq!(find("acute bronchitis"), [0, 1]);
        assert_eq!(find("\"bronchitis acute\""), Vec::<u32>::new());
        assert_eq!(find("\"chronic bronchitis\" OR muller"), [0, 1, 2]);
        assert_eq!(find("müller"), [0, 2]);
        assert_eq!(find("Mu\u{308}ller"), [0, 2]);
        assert_eq!(find("pain (chronic OR acute)"), [1]);
        assert_eq!(find(&"x".repeat(WORD_MAX + 1)), Vec::<u32>::new());
    }

    /// The words of `text` as the tokenizer cuts them, before folding.
    fn raw_words(text: &str) -> Vec<String> {
        let mut tokenizer = SimpleTokenizer::default();
        let mut stream = tokenizer.token_stream(text);
        let mut words = Vec::new();
        while stream.advance() {
            words.push(stream.token().text.clone());
        }
        words
    }

    /// `text` in upper case where a letter's case maps one to one (`ǰ` has no single upper
    /// case letter, `ﬓ` is not the lower case of its upper case).
    fn upper(text: &str) -> String {
        text.chars()
            .map(|c| {
                let mut upper = c.to_uppercase();
                match (upper.next(), upper.next()) {
                    (Some(u), None) if u.to_lowercase().eq([c]) => u,
                    _ => c,
                }
            })
            .collect()
    }

    /// Text of words of letters and digits from any script, with punctuation between them.
    fn texts() -> impl Strategy<Value = String> {
        proptest::collection::vec(("[\\p{L}\\p{N}]{1,8}", "[ ,.;:!?()\\-\n\"'/]{1,3}"), 1..30)
            .prop_map(|parts| parts.into_iter().map(|(w, s)| w + &s).collect())
    }

    /// Query-like text: operators, parentheses and quotes among any characters.
    fn queries() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("(".to_string()),
            Just(")".to_string()),
            Just("\"".to_string()),
            Just(" AND ".to_string()),
            Just(" or ".to_string()),
            Just(" ".to_string()),
            "\\PC{0,6}",
        ];
        proptest::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Parsing any text, and building its query, never panics.
        #[test]
        fn parsing_never_panics(value in prop_oneof![any::<String>(), queries()]) {
            let field = Schema::builder().add_text_field("content", field_options());
            let _ = query(field, &value);
        }

        /// A phrase of consecutive words of a text, in either case, matches that text.
        #[test]
        fn a_phrase_of_a_text_matches_it(
            text in texts(),
            start in any::<prop::sample::Index>(),
            length in 1usize..5,
            upper in any::<bool>(),
        ) {
            let texts = Text::of(&json!({"note": [{"text": text}]})).other;
            let words = raw_words(&texts[0]);
            let first = start.index(words.len());
            let mut phrase = words[first..(first + length).min(words.len())].join(" ");
            if upper {
                phrase = self::upper(&phrase);
            }
            let (index, field) = index_of(&[texts, vec!["unrelated".into()]]);
            prop_assert_eq!(matching(&index, field, &format!("\"{phrase}\"")), [0]);
        }
    }
}
