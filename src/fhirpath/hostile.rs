//! Expressions and inputs written to break the engine: each must end in a value or an error,
//! never a panic, a stack overflow or work without bound. Every evaluation here runs on a
//! thread with a small stack ([`STACK`]), a fraction of the 2 MiB an HTTP worker has, so that
//! an engine that recursed too deeply fails here first.

use super::budget::Limits;
use super::eval::{EvalError, Items, evaluate_within};
use super::parser::{MAX_DEPTH, MAX_LENGTH};
use super::{Item, parse};
use proptest::prelude::*;
use serde_json::{Value, json};

/// The stack each case runs with (debug build).
const STACK: usize = 512 * 1024;

/// What parsing and evaluating `expression` on `resource` within `limits` gives, on a thread
/// with a [`STACK`]-sized stack: the parse error, the evaluation error, or the items' JSON.
fn run_within(expression: &str, resource: &Value, limits: Limits) -> Result<Vec<Value>, String> {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .stack_size(STACK)
            .spawn_scoped(scope, || {
                let expr = parse(expression).map_err(|e| format!("parse: {e}"))?;
                evaluate_within(&limits, &expr, resource, None, [resource, resource])
                    .map(|items| rendered(&items))
                    .map_err(|e| match e {
                        EvalError::Exceeded(why) => format!("exceeded: {why}"),
                        EvalError::Invalid(why) => format!("invalid: {why}"),
                    })
            })
            .expect("a thread")
            .join()
            .expect("no panic")
    })
}

fn run(expression: &str, resource: &Value) -> Result<Vec<Value>, String> {
    run_within(expression, resource, Limits::DEFAULT)
}

fn rendered(items: &Items<'_>) -> Vec<Value> {
    items
        .iter()
        .map(|item| match item {
            Item::Node { value, .. } => (*value).clone(),
            Item::Bool(b) => json!(b),
            Item::Str(s) => json!(s),
            Item::Number(n) => json!(n),
            Item::Resolved(ty) => json!({ "resolved": ty }),
        })
        .collect()
}

fn fails_with(expression: &str, resource: &Value, prefix: &str) {
    fails_within(expression, resource, Limits::DEFAULT, prefix)
}

fn fails_within(expression: &str, resource: &Value, limits: Limits, prefix: &str) {
    match run_within(expression, resource, limits) {
        Err(why) => assert!(why.starts_with(prefix), "{}: {why}", short(expression)),
        Ok(items) => panic!("{}: evaluated to {items:?}", short(expression)),
    }
}

fn short(expression: &str) -> String {
    expression.chars().take(60).collect()
}

fn patient() -> Value {
    json!({"resourceType": "Patient", "id": "p",
        "text": {"status": "generated",
            "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Marie Lux</div>"},
        "name": [{"family": "Lux", "given": ["Marie", "Anne"]}],
        "telecom": [{"system": "phone", "value": "1"}],
        "contained": [{"resourceType": "Organization", "id": "o"}],
        "managingOrganization": {"reference": "#o"}})
}

/// A resource of about `n` thousand nodes.
fn big(n: usize) -> Value {
    let entries: Vec<Value> = (0..n * 100)
        .map(|i| json!({"fullUrl": format!("urn:uuid:{i}"), "search": {"mode": "match"}}))
        .collect();
    json!({"resourceType": "Bundle", "type": "searchset", "entry": entries})
}

#[test]
fn a_backslash_before_any_character_is_a_parse_error_or_an_escape() {
    let p = patient();
    fails_with("'\\é'.exists()", &p, "parse: at 1: unknown escape");
    fails_with("'\\", &p, "parse:");
    fails_with("'\\u12'", &p, "parse:");
    fails_with("'\\u12é4'", &p, "parse:");
    fails_with("'\\uD800'", &p, "parse:");
    fails_with("`a\\é`", &p, "parse:");
    fails_with("%'\\é'", &p, "parse:");
    fails_with("'é\\", &p, "parse:");
    assert_eq!(
        run("'\\'\\\"\\`\\\\\\/\\f\\n\\r\\t\\u00e9\\uD83D\\uDE00'", &p),
        Ok(vec![json!("'\"`\\/\u{c}\n\r\té😀")])
    );
    assert_eq!(
        run("`given`.count()", &json!({"given": [1, 2]})),
        Ok(vec![json!(2.0)])
    );
    assert_eq!(run("é", &p).unwrap_err(), "parse: at 0: unexpected 'é'");
}

#[test]
fn what_nests_too_deep_is_refused_by_the_parser() {
    let p = patient();
    let nested = |open: &str, inner: &str, close: &str, n: usize| {
        format!("{}{inner}{}", open.repeat(n), close.repeat(n))
    };
    // Past the length limit, nothing is read at all.
    fails_with(&nested("(", "1", ")", 20_000), &p, "parse: at 16384:");
    fails_with(&"-".repeat(50_000), &p, "parse: at 16384:");
    fails_with(&format!("'{}'", "x".repeat(MAX_LENGTH)), &p, "parse:");
    fails_with(&vec!["1"; 100_000].join("+"), &p, "parse:");
    // Within it, too deep.
    let deep = "parse: at";
    fails_with(&nested("(", "1", ")", 5_000), &p, deep);
    fails_with(&format!("{}1", "-".repeat(10_000)), &p, deep);
    fails_with(&format!("{}1", "- +".repeat(3_000)), &p, deep);
    fails_with(&nested("name.where(", "true", ")", 1_000), &p, deep);
    fails_with(&nested("f(", "1", ")", 5_000), &p, deep);
    fails_with(&format!("name{}", "[0]".repeat(4_000)), &p, deep);
    fails_with(&format!("name{}", ".given".repeat(2_000)), &p, deep);
    fails_with(&vec!["1"; 5_000].join("+"), &p, deep);
    fails_with(&vec!["true"; 1_500].join(" and "), &p, deep);
    fails_with(&format!("1{}", " is Integer".repeat(1_000)), &p, deep);
    // Long flat expressions are fine: a literal, a union of two.
    let literal = format!("'{}'.length()", "x".repeat(MAX_LENGTH - 20));
    assert_eq!(run(&literal, &p), Ok(vec![json!((MAX_LENGTH - 20) as f64)]));
}

#[test]
fn the_deepest_expressions_allowed_evaluate_within_a_small_stack() {
    let p = patient();
    // Each as deep as the parser allows, in every shape that recurses.
    let depth = MAX_DEPTH - 1;
    let cases = [
        format!("{}true{}", "(".repeat(depth), ")".repeat(depth)),
        format!("{}1", "-".repeat(depth - 1)),
        vec!["1"; depth].join(" + "),
        vec!["true"; depth].join(" and "),
        format!("{}name{}", "(".repeat(depth - 1), ")".repeat(depth - 1)),
        format!(
            "{}true{}",
            "name.where(".repeat(depth / 2),
            ")".repeat(depth / 2)
        ),
        format!(
            "{}true{}",
            "iif(".repeat(depth - 1),
            ", 1, 2)".repeat(depth - 1)
        ),
        format!("name{}", ".given".repeat(depth - 1)),
        format!("name{}", "[0]".repeat(depth - 1)),
    ];
    for expression in &cases {
        let result = run(expression, &p);
        assert!(
            result.is_ok() || result.as_ref().unwrap_err().starts_with("invalid"),
            "{}: {result:?}",
            short(expression)
        );
    }
    // One deeper is refused.
    fails_with(&vec!["1"; MAX_DEPTH + 1].join(" + "), &p, "parse:");
}

#[test]
fn work_without_bound_runs_out_of_budget() {
    let p = patient();
    let large = big(50);
    let exceeded = "exceeded:";
    // Within the default limits (ten million steps, a few seconds of a debug build).
    fails_with(
        "descendants().select(%resource.descendants())",
        &large,
        exceeded,
    );
    // The others within a million steps, to keep this test quick: the point is that the work
    // stops, wherever the limit is.
    let million = Limits {
        steps: 1_000_000,
        ..Limits::DEFAULT
    };
    let fails_with = |expression: &str, resource: &Value, prefix: &str| {
        fails_within(expression, resource, million, prefix)
    };
    // Collections that grow with every step.
    fails_with("1.repeat($this + 1)", &p, exceeded);
    fails_with("'a'.repeat($this & 'a')", &p, exceeded);
    fails_with("entry.select(%resource.entry).count()", &large, exceeded);
    fails_with("entry.intersect(entry.fullUrl)", &large, exceeded);
    fails_with("entry.exclude(entry.search)", &large, exceeded);
    fails_with("entry.subsetOf(entry)", &large, exceeded);
    fails_with("entry ~ entry", &large, exceeded);
    fails_with(
        "descendants().all(%resource.entry.count() > 0)",
        &large,
        exceeded,
    );
    // Objects told apart only deep inside: every pair is compared.
    let alike: Vec<Value> = (0..4_000)
        .map(|i| json!({ "search": { "score": i } }))
        .collect();
    fails_with("entry.distinct()", &json!({ "entry": alike }), exceeded);
    // Strings that double, or are read again and again.
    fails_with(
        &format!("'a'{}", ".replace('a', 'aaaaaaaaaa')".repeat(10)),
        &p,
        exceeded,
    );
    fails_with(
        &format!("'a'{}", ".replaceMatches('', 'aaaaaaaaaa')".repeat(10)),
        &p,
        exceeded,
    );
    let wide = json!({"resourceType": "Basic", "text": "x".repeat(4_000_000),
        "b": (0..300).collect::<Vec<_>>()});
    fails_with(
        "descendants().select(%resource.text.length())",
        &wide,
        exceeded,
    );
    fails_with(
        "descendants().select(%resource.text = %resource.text)",
        &wide,
        exceeded,
    );
    fails_with("(text & text).length()", &wide, exceeded);
    fails_with("text.upper().lower().upper()", &wide, exceeded);
    // Two equal halves of a resource compared, again and again.
    let half = big(5);
    let twins = json!({ "a": half, "b": half.clone() });
    fails_with(
        "descendants().select(%resource.a = %resource.b)",
        &twins,
        exceeded,
    );
    assert_eq!(run("a = b", &twins), Ok(vec![json!(true)]));
    // Bounded work on the same resources is done.
    assert_eq!(
        run("descendants().count() > 1000", &large),
        Ok(vec![json!(true)])
    );
    assert_eq!(
        run("entry.fullUrl.isDistinct()", &large),
        Ok(vec![json!(true)])
    );
    assert_eq!(
        run("name.repeat(given | family).count()", &p),
        Ok(vec![json!(3.0)])
    );
    // A smaller budget stops sooner; a result does not depend on the budget.
    let tight = Limits {
        steps: 100,
        ..Limits::DEFAULT
    };
    assert!(run_within("entry.count()", &large, tight).is_err());
    assert_eq!(
        run_within("name.given.count()", &p, tight),
        run("name.given.count()", &p)
    );
}

#[test]
fn regular_expressions_are_bounded_in_size_and_time() {
    let text = json!({"resourceType": "Basic", "id": format!("{}!", "a".repeat(100_000))});
    // The regex crate does not backtrack: this classic catastrophe takes linear time.
    assert_eq!(run("id.matches('^(a+)+$')", &text), Ok(vec![json!(false)]));
    assert_eq!(run("id.matches('(a|aa)+!')", &text), Ok(vec![json!(true)]));
    // Too big to compile, too deep to parse, too long to take, or not a pattern at all.
    fails_with("id.matches('a{1000}{1000}')", &text, "exceeded:");
    fails_with("id.matches('(\\\\w{100}){100}')", &text, "exceeded:");
    let nested = format!("id.matches('{}a{}')", "(".repeat(200), ")".repeat(200));
    fails_with(&nested, &text, "invalid:");
    fails_with(
        "id.matches(%resource.id & %resource.id & %resource.id)",
        &text,
        "exceeded:",
    );
    fails_with("id.matches('(')", &text, "invalid:");
}

#[test]
fn odd_values_in_resources_are_taken_in_stride() {
    let odd = json!({"resourceType": "Basic", "id": "\u{0}é\u{10FFFF}",
        "extension": [null, {}, [], {"url": 1}], "_id": {"extension": []},
        "n": 1e300, "m": -0.0, "s": "", "b": [true, false, null]});
    for expression in [
        "descendants().count()",
        "extension('x')",
        "children().distinct().count()",
        "n * n * n",
        "n div 0",
        "m = 0",
        "id.substring(1, 18446744073709551615)",
        "id.substring(18446744073709551615)",
        "id[18446744073709551615]",
        "s.indexOf('')",
        "s.replace('', 'x')",
        "b.allTrue()",
        "id.toInteger()",
        "999999999999999999999999999999.toString()",
        "extension.resolve()",
        "%resource.id.htmlChecks()",
    ] {
        let result = run(expression, &odd);
        assert!(
            !result.as_ref().is_err_and(|e| e.starts_with("exceeded")),
            "{expression}: {result:?}"
        );
    }
}

#[test]
fn html_checks_judge_the_narrative() {
    let mut p = patient();
    assert_eq!(run("text.div.htmlChecks()", &p), Ok(vec![json!(true)]));
    p["text"]["div"] = json!(
        "<div xmlns=\"http://www.w3.org/1999/xhtml\"><img src=\"x\" onerror=\"alert(1)\"/></div>"
    );
    assert_eq!(run("text.div.htmlChecks()", &p), Ok(vec![json!(false)]));
    assert_eq!(run("name.htmlChecks()", &p), Ok(vec![]));
    assert_eq!(run("{}.htmlChecks()", &p), Ok(vec![]));
}

/// A generated expression: from the grammar (names, literals, operators, functions, deep
/// nesting) or from characters the tokenizer must cope with.
fn expression() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        prop::sample::select(vec![
            "name",
            "given",
            "family",
            "text",
            "div",
            "id",
            "contained",
            "reference",
            "telecom",
            "value",
            "system",
            "Patient",
            "$this",
            "%resource",
            "%context",
            "%rootResource",
            "%ucum",
            "{}",
            "true",
            "0",
            "1.5",
            "'x'",
            "'\\u00e9'",
            "`div`",
        ])
        .prop_map(String::from),
        "[a-z]{1,3}".prop_map(|s| format!("'{s}'")),
    ];
    let grammar = leaf.prop_recursive(8, 64, 3, |inner| {
        let function = prop::sample::select(vec![
            "where",
            "select",
            "repeat",
            "all",
            "exists",
            "count",
            "distinct",
            "isDistinct",
            "descendants",
            "children",
            "first",
            "last",
            "tail",
            "skip",
            "take",
            "union",
            "combine",
            "intersect",
            "exclude",
            "subsetOf",
            "iif",
            "not",
            "empty",
            "matches",
            "replaceMatches",
            "replace",
            "contains",
            "substring",
            "length",
            "upper",
            "lower",
            "toString",
            "toInteger",
            "htmlChecks",
            "resolve",
            "ofType",
            "extension",
            "trace",
        ]);
        let operator = prop::sample::select(vec![
            "+", "-", "*", "/", "div", "mod", "&", "|", "=", "!=", "~", "!~", "<", ">=", "and",
            "or", "xor", "implies", "in", "contains", "is", "as",
        ]);
        prop_oneof![
            (inner.clone(), operator, inner.clone()).prop_map(|(a, op, b)| format!("{a} {op} {b}")),
            (
                inner.clone(),
                function,
                prop::collection::vec(inner.clone(), 0..3)
            )
                .prop_map(|(a, f, args)| format!("{a}.{f}({})", args.join(", "))),
            (inner.clone(), "[a-z]{1,6}").prop_map(|(a, m)| format!("{a}.{m}")),
            inner.clone().prop_map(|a| format!("({a})")),
            inner.clone().prop_map(|a| format!("-{a}")),
            (inner, 0..3usize).prop_map(|(a, n)| format!("{a}[{n}]")),
        ]
    });
    let deep = (
        prop::sample::select(vec!["(", "-", "name.where(", "f(", "+"]),
        0..400usize,
    )
        .prop_map(|(open, n)| {
            let close = if open.ends_with('(') { ")" } else { "" };
            format!("{}1{}", open.repeat(n), close.repeat(n))
        });
    let garbage = "[-a-z0-9 ()\\[\\]{}.,'`%$\\\\|&=~!<>+*/éü😀\u{0}]{0,60}";
    prop_oneof![4 => grammar, 1 => deep, 2 => garbage.prop_map(String::from)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Whatever is written, parsing and evaluating end in a value or an error (never a panic
    /// nor a stack overflow: `run` would fail), and a result found within a small budget is
    /// the one found within the default: the budget only ever stops work, never changes it.
    #[test]
    fn expressions_never_break_the_engine(text in expression()) {
        let p = patient();
        let tight = Limits { steps: 2_000, ..Limits::DEFAULT };
        let small = run_within(&text, &p, tight);
        let full = run(&text, &p);
        if small.is_ok() {
            prop_assert_eq!(small, full);
        }
    }
}
