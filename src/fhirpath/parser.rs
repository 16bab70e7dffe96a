//! The FHIRPath grammar fhirlake evaluates: what the FHIR R4 search parameters and the
//! invariants of the R4 StructureDefinitions are written in.
//!
//! Supported: member paths (`Patient.name.given`), indexers (`[0]`), function calls
//! (`where(...)`, `as(T)`, `exists()`, `resolve()`, `count()`, `matches('re')`, ...), every
//! operator (`* / div mod`, `+ - &`, `is as`, `|`, `< > <= >=`, `= ~ != !~`, `in contains`,
//! `and`, `or xor`, `implies`, unary `-`), string, number and boolean literals, `{}`,
//! parentheses, `$this` and environment variables (`%resource`, `%ucum`, ``%`vs-name` ``).
//! Precedence follows the FHIRPath specification, in that order from the tightest after `.`
//! and `[]`.

use std::fmt;

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// `$this`: the item the expression is evaluated on.
    This,
    /// A member of each item of the input: `input.name`.
    Member(Box<Expr>, String),
    /// A function applied to the input: `input.name(args)`.
    Call(Box<Expr>, String, Vec<Expr>),
    /// `input[n]`
    Index(Box<Expr>, usize),
    /// `input[expression]`: an index computed on the invocation's input (`name[%i]`).
    IndexBy(Box<Expr>, Box<Expr>),
    Union(Box<Expr>, Box<Expr>),
    /// `input is Type`
    Is(Box<Expr>, String),
    /// `input as Type`
    As(Box<Expr>, String),
    /// `=` (false) or `!=` (true).
    Equals(Box<Expr>, Box<Expr>, bool),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    /// The other binary operators.
    Binary(Op, Box<Expr>, Box<Expr>),
    /// `-x`
    Negate(Box<Expr>),
    /// `%name`: an environment variable.
    Env(String),
    /// `{}`: the empty collection.
    Empty,
    Str(String),
    Number(f64),
    Bool(bool),
}

/// The binary operators other than `|`, `=`, `!=`, `and` and `or`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Implies,
    Xor,
    In,
    Contains,
    /// `~` (false) and `!~` (true) are `Equivalent(negated)`.
    Equivalent(bool),
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    Add,
    Subtract,
    Concatenate,
    Multiply,
    Divide,
    IntegerDivide,
    Modulo,
}

/// The longest expression [`parse`] reads, in bytes. The longest invariant of R4 is 366 bytes
/// long and the longest search parameter expression 1,386; an expression is a rule written
/// by a person, not data.
pub const MAX_LENGTH: usize = 16 * 1024;

/// How deeply an expression may nest: the depth of the parsed tree (`a.b.c` is 4 deep:
/// `$this.a.b.c`; `-(-1)` 3, `1 + 2 + 3` 3), and the nesting of parentheses and function
/// arguments. The deepest R4 invariant is 15 deep, the deepest search parameter expression
/// 35 (a union of the paths of 34 resource types). The parser and the
/// evaluator recurse once per level (a few stack frames each), so this bounds the stack
/// either uses: at this depth, under 512 KiB in a debug build (`fhirpath::hostile` runs the
/// deepest shapes on such a stack), a fraction of that in a release build; an HTTP worker
/// has 2 MiB.
pub const MAX_DEPTH: usize = 64;

/// Why an expression could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub at: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at {}: {}", self.at, self.message)
    }
}

impl std::error::Error for ParseError {}

fn error<T>(at: usize, message: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError {
        at,
        message: message.into(),
    })
}

/// The operators and punctuation, longest first.
const SYMBOLS: &[&str] = &[
    "!=", "!~", "<=", ">=", ".", "(", ")", "[", "]", "{", "}", "|", "=", "~", "<", ">", ",", "+",
    "-", "*", "/", "&",
];

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Number(f64),
    Symbol(&'static str),
    /// `%name`, ``%`name` `` or `%'name'`.
    Env(String),
}

fn tokenize(text: &str) -> Result<Vec<(usize, Token)>, ParseError> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        match bytes[i] {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            quote @ (b'\'' | b'`') => {
                let (value, end) = quoted(text, i)?;
                tokens.push((
                    start,
                    if quote == b'\'' {
                        Token::Str(value)
                    } else {
                        Token::Ident(value)
                    },
                ));
                i = end;
            }
            b'0'..=b'9' => {
                while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                    // A dot not followed by a digit ends the number (`1.exists()` is not valid
                    // in search expressions, but keep the rule simple and strict).
                    if bytes[i] == b'.' && !bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
                        break;
                    }
                    i += 1;
                }
                let Ok(number) = text[start..i].parse() else {
                    return error(start, "bad number");
                };
                tokens.push((start, Token::Number(number)));
            }
            b'%' => {
                let (name, end) = match bytes.get(i + 1) {
                    Some(b'`' | b'\'') => quoted(text, i + 1)?,
                    _ => {
                        let rest = &text[i + 1..];
                        let length = rest
                            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                            .unwrap_or(rest.len());
                        (rest[..length].to_string(), i + 1 + length)
                    }
                };
                if name.is_empty() {
                    return error(start, "expected a variable name after '%'");
                }
                tokens.push((start, Token::Env(name)));
                i = end;
            }
            b'$' | b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                i += 1;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                tokens.push((start, Token::Ident(text[start..i].to_string())));
            }
            _ => {
                let Some(symbol) = SYMBOLS.iter().copied().find(|s| text[i..].starts_with(s))
                else {
                    let c = text[i..].chars().next().unwrap_or_default();
                    return error(start, format!("unexpected '{c}'"));
                };
                i += symbol.len();
                tokens.push((start, Token::Symbol(symbol)));
            }
        }
    }
    Ok(tokens)
}

/// The string or delimited identifier quoted by the (ASCII) quote at byte `start` of `text`,
/// with its escapes replaced, and the byte after its closing quote. The escapes are the
/// specification's: `\'`, `\"`, `` \` ``, `\\`, `\/`, `\f`, `\n`, `\r`, `\t` and `\uXXXX`
/// (a UTF-16 unit: a surrogate pair makes one character); any other is an error.
fn quoted(text: &str, start: usize) -> Result<(String, usize), ParseError> {
    let quote = char::from(text.as_bytes()[start]);
    let mut value = String::new();
    let mut chars = text[start + 1..]
        .char_indices()
        .map(|(at, c)| (start + 1 + at, c));
    // A high surrogate waiting for its low half, and where it was.
    let mut high: Option<(u16, usize)> = None;
    loop {
        let Some((at, c)) = chars.next() else {
            return error(start, "unterminated string");
        };
        if c == quote || c != '\\' {
            if let Some((_, at)) = high {
                return error(at, "a lone surrogate in \\u escapes");
            }
            if c == quote {
                return Ok((value, at + 1));
            }
            value.push(c);
            continue;
        }
        let escaped = match chars.next() {
            None => return error(at, "unterminated string"),
            Some((_, c)) => c,
        };
        let unit = match escaped {
            'u' => {
                let mut unit = 0u16;
                for _ in 0..4 {
                    let digit = chars.next().and_then(|(_, c)| c.to_digit(16));
                    let Some(digit) = digit else {
                        return error(at, "\\u needs 4 hexadecimal digits");
                    };
                    unit = unit * 16 + digit as u16;
                }
                unit
            }
            _ => {
                if let Some((_, at)) = high {
                    return error(at, "a lone surrogate in \\u escapes");
                }
                value.push(match escaped {
                    '\'' | '"' | '`' | '\\' | '/' => escaped,
                    'f' => '\u{c}',
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    other => return error(at, format!("unknown escape '\\{other}'")),
                });
                continue;
            }
        };
        match (high.take(), unit) {
            (None, 0xD800..=0xDBFF) => high = Some((unit, at)),
            (Some((first, _)), 0xDC00..=0xDFFF) => {
                let c = char::decode_utf16([first, unit]).next();
                value.push(c.and_then(Result::ok).unwrap_or_default());
            }
            (None, _) => match char::from_u32(u32::from(unit)) {
                Some(c) => value.push(c),
                None => return error(at, "a lone surrogate in \\u escapes"),
            },
            (Some((_, at)), _) => return error(at, "a lone surrogate in \\u escapes"),
        }
    }
}

/// Parses a FHIRPath expression: at most [`MAX_LENGTH`] bytes long and [`MAX_DEPTH`] deep.
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    if text.len() > MAX_LENGTH {
        return error(
            MAX_LENGTH,
            format!(
                "the expression is {} bytes long; at most {MAX_LENGTH} are read",
                text.len()
            ),
        );
    }
    let tokens = tokenize(text)?;
    let mut parser = Parser {
        tokens,
        at: 0,
        end: text.len(),
        nesting: 0,
    };
    let tree = parser.expression()?;
    match parser.tokens.get(parser.at) {
        None => Ok(tree.expr),
        Some((at, token)) => error(*at, format!("unexpected {token:?}")),
    }
}

/// A parsed expression and the depth of its tree.
struct Tree {
    expr: Expr,
    depth: usize,
}

/// How an infix operator builds its expression.
#[derive(Clone, Copy)]
enum Infix {
    Op(Op),
    And,
    Or,
    Union,
    /// `=` (false) or `!=` (true).
    Equals(bool),
    /// `is` (false) or `as` (true): the right operand is a type name.
    Type(bool),
}

/// The infix operators by how tightly they bind, loosest first, as the specification orders
/// them; each level is left-associative. A word is a keyword, anything else a symbol.
const LEVELS: &[&[(&str, Infix)]] = &[
    &[("implies", Infix::Op(Op::Implies))],
    &[("or", Infix::Or), ("xor", Infix::Op(Op::Xor))],
    &[("and", Infix::And)],
    &[
        ("in", Infix::Op(Op::In)),
        ("contains", Infix::Op(Op::Contains)),
    ],
    &[
        ("=", Infix::Equals(false)),
        ("!=", Infix::Equals(true)),
        ("~", Infix::Op(Op::Equivalent(false))),
        ("!~", Infix::Op(Op::Equivalent(true))),
    ],
    &[
        ("<=", Infix::Op(Op::LessOrEqual)),
        (">=", Infix::Op(Op::GreaterOrEqual)),
        ("<", Infix::Op(Op::Less)),
        (">", Infix::Op(Op::Greater)),
    ],
    &[("|", Infix::Union)],
    &[("is", Infix::Type(false)), ("as", Infix::Type(true))],
    &[
        ("+", Infix::Op(Op::Add)),
        ("-", Infix::Op(Op::Subtract)),
        ("&", Infix::Op(Op::Concatenate)),
    ],
    &[
        ("*", Infix::Op(Op::Multiply)),
        ("/", Infix::Op(Op::Divide)),
        ("div", Infix::Op(Op::IntegerDivide)),
        ("mod", Infix::Op(Op::Modulo)),
    ],
];

/// A precedence-climbing parser. It recurses into a parenthesis or a function argument
/// ([`Parser::expression`], counted: at most [`MAX_DEPTH`] deep) and into the right operand of
/// a tighter operator (at most one call per level of `LEVELS` between two parentheses);
/// left-associative chains and prefix signs are loops. The tree it builds is at most
/// [`MAX_DEPTH`] deep too.
struct Parser {
    tokens: Vec<(usize, Token)>,
    at: usize,
    end: usize,
    /// How many parentheses and function arguments enclose the current token.
    nesting: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at).map(|(_, t)| t)
    }

    fn position(&self) -> usize {
        self.tokens.get(self.at).map_or(self.end, |(at, _)| *at)
    }

    fn error<T>(&self, message: impl Into<String>) -> Result<T, ParseError> {
        error(self.position(), message)
    }

    fn too_deep<T>(&self) -> Result<T, ParseError> {
        self.error(format!("the expression nests deeper than {MAX_DEPTH}"))
    }

    /// Whether the next token is the symbol or keyword `word`.
    fn next_is(&self, word: &str) -> bool {
        match self.peek() {
            Some(Token::Symbol(s)) => *s == word,
            Some(Token::Ident(name)) => name == word && word.starts_with(char::is_alphabetic),
            _ => false,
        }
    }

    /// The next token, taken when it is the symbol or keyword `word`.
    fn eat(&mut self, word: &str) -> bool {
        let found = self.next_is(word);
        if found {
            self.at += 1;
        }
        found
    }

    fn expect(&mut self, symbol: &str) -> Result<(), ParseError> {
        if self.eat(symbol) {
            Ok(())
        } else {
            self.error(format!("expected '{symbol}'"))
        }
    }

    /// `expr` with children `depth` deep: an error when it would be deeper than allowed.
    fn node(&self, expr: Expr, depth: usize) -> Result<Tree, ParseError> {
        if depth >= MAX_DEPTH {
            return self.too_deep();
        }
        Ok(Tree {
            expr,
            depth: depth + 1,
        })
    }

    /// A whole expression (at the top, in parentheses or as a function argument).
    fn expression(&mut self) -> Result<Tree, ParseError> {
        if self.nesting >= MAX_DEPTH {
            return self.too_deep();
        }
        self.nesting += 1;
        let tree = self.binary(0);
        self.nesting -= 1;
        tree
    }

    /// Operands joined by the operators of `LEVELS[min..]`. (The work that does not recurse
    /// is in functions of its own, to keep this frame small: it is on the stack once per
    /// level of nesting.)
    fn binary(&mut self, min: usize) -> Result<Tree, ParseError> {
        let mut left = self.unary()?;
        while let Some((level, infix)) = self.operator(min) {
            left = match infix {
                Infix::Type(cast) => self.type_test(left, cast)?,
                _ => {
                    let right = self.binary(level + 1)?;
                    self.infix(infix, left, right)?
                }
            };
        }
        Ok(left)
    }

    /// The operator of `LEVELS[min..]` that comes next, taken, with its level.
    fn operator(&mut self, min: usize) -> Option<(usize, Infix)> {
        let found = (min..LEVELS.len()).find_map(|level| {
            LEVELS[level]
                .iter()
                .find(|(word, _)| self.next_is(word))
                .map(|&(_, infix)| (level, infix))
        });
        if found.is_some() {
            self.at += 1;
        }
        found
    }

    /// `left is T` or (`cast`) `left as T`.
    fn type_test(&mut self, left: Tree, cast: bool) -> Result<Tree, ParseError> {
        let ty = self.type_name()?;
        let l = Box::new(left.expr);
        let expr = if cast {
            Expr::As(l, ty)
        } else {
            Expr::Is(l, ty)
        };
        self.node(expr, left.depth)
    }

    /// `left infix right`.
    fn infix(&self, infix: Infix, left: Tree, right: Tree) -> Result<Tree, ParseError> {
        let depth = left.depth.max(right.depth);
        let (l, r) = (Box::new(left.expr), Box::new(right.expr));
        let expr = match infix {
            Infix::Op(op) => Expr::Binary(op, l, r),
            Infix::And => Expr::And(l, r),
            Infix::Or => Expr::Or(l, r),
            Infix::Union => Expr::Union(l, r),
            Infix::Equals(negated) => Expr::Equals(l, r, negated),
            Infix::Type(_) => unreachable!("a type test is read by type_test()"),
        };
        self.node(expr, depth)
    }

    /// Prefix signs (`-` negates, `+` does nothing), then a term with its invocations.
    fn unary(&mut self) -> Result<Tree, ParseError> {
        let mut negations = 0usize;
        loop {
            if self.eat("-") {
                negations += 1;
            } else if !self.eat("+") {
                break;
            }
        }
        let mut tree = self.postfix()?;
        for _ in 0..negations {
            tree = self.node(Expr::Negate(Box::new(tree.expr)), tree.depth)?;
        }
        Ok(tree)
    }

    /// `Name` or `FHIR.Name` / `System.Name`.
    fn type_name(&mut self) -> Result<String, ParseError> {
        let mut name = self.identifier()?;
        while self.eat(".") {
            name = self.identifier()?;
        }
        Ok(name)
    }

    fn identifier(&mut self) -> Result<String, ParseError> {
        match self.peek() {
            Some(Token::Ident(name)) => {
                let name = name.clone();
                self.at += 1;
                Ok(name)
            }
            _ => self.error("expected a name"),
        }
    }

    fn postfix(&mut self) -> Result<Tree, ParseError> {
        let mut tree = self.term()?;
        loop {
            if self.eat(".") {
                tree = self.invocation(tree)?;
            } else if self.eat("[") {
                tree = self.index(tree)?;
            } else {
                return Ok(tree);
            }
        }
    }

    /// `input[n]` or `input[expression]`, after the `[`.
    fn index(&mut self, input: Tree) -> Result<Tree, ParseError> {
        if let Some(Token::Number(n)) = self.peek()
            && *n >= 0.0
            && n.fract() == 0.0
            && matches!(self.tokens.get(self.at + 1), Some((_, Token::Symbol("]"))))
        {
            let index = *n as usize;
            self.at += 2;
            return self.node(Expr::Index(Box::new(input.expr), index), input.depth);
        }
        let index = self.expression()?;
        self.expect("]")?;
        let depth = input.depth.max(index.depth);
        self.node(
            Expr::IndexBy(Box::new(input.expr), Box::new(index.expr)),
            depth,
        )
    }

    /// `name` or `name(args)` applied to `input`.
    fn invocation(&mut self, input: Tree) -> Result<Tree, ParseError> {
        let name = self.identifier()?;
        if !self.eat("(") {
            return self.node(Expr::Member(Box::new(input.expr), name), input.depth);
        }
        let mut args = Vec::new();
        let mut depth = input.depth;
        if !self.eat(")") {
            loop {
                let arg = self.expression()?;
                depth = depth.max(arg.depth);
                args.push(arg.expr);
                if self.eat(")") {
                    break;
                }
                self.expect(",")?;
            }
        }
        self.node(Expr::Call(Box::new(input.expr), name, args), depth)
    }

    /// A literal, a variable, `$this`, `{}`, a parenthesis or an invocation on `$this`.
    fn term(&mut self) -> Result<Tree, ParseError> {
        if let Some(leaf) = self.leaf() {
            self.at += 1;
            return Ok(Tree {
                expr: leaf,
                depth: 1,
            });
        }
        if self.eat("(") {
            let inner = self.expression()?;
            self.expect(")")?;
            return Ok(inner);
        }
        if self.eat("{") {
            self.expect("}")?;
            return Ok(Tree {
                expr: Expr::Empty,
                depth: 1,
            });
        }
        if !matches!(self.peek(), Some(Token::Ident(_))) {
            return self.error("expected an expression");
        }
        // `name` is `$this.name`: two levels, as the evaluator recurses.
        self.invocation(Tree {
            expr: Expr::This,
            depth: 1,
        })
    }

    /// The next token as a literal, a variable or `$this`, when it is one (not taken).
    fn leaf(&self) -> Option<Expr> {
        Some(match self.peek()? {
            Token::Str(value) => Expr::Str(value.clone()),
            Token::Number(value) => Expr::Number(*value),
            Token::Env(name) => Expr::Env(name.clone()),
            Token::Ident(word) if word == "true" || word == "false" => Expr::Bool(word == "true"),
            Token::Ident(word) if word == "$this" => Expr::This,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(input: Expr, name: &str) -> Expr {
        Expr::Member(Box::new(input), name.into())
    }

    #[test]
    fn parses_paths_unions_and_functions() {
        let expr = parse("Patient.name.given | Person.name").unwrap();
        assert_eq!(
            expr,
            Expr::Union(
                Box::new(member(
                    member(member(Expr::This, "Patient"), "name"),
                    "given"
                )),
                Box::new(member(member(Expr::This, "Person"), "name")),
            )
        );
        let expr = parse("CarePlan.subject.where(resolve() is Patient)").unwrap();
        let Expr::Call(_, name, args) = expr else {
            panic!()
        };
        assert_eq!(name, "where");
        assert_eq!(
            args[0],
            Expr::Is(
                Box::new(Expr::Call(Box::new(Expr::This), "resolve".into(), vec![])),
                "Patient".into()
            )
        );
    }

    #[test]
    fn is_and_as_bind_tighter_than_union() {
        let expr = parse("(A.x as dateTime) | A.y as Period").unwrap();
        let Expr::Union(left, right) = expr else {
            panic!()
        };
        assert!(matches!(*left, Expr::As(_, ref t) if t == "dateTime"));
        assert!(matches!(*right, Expr::As(_, ref t) if t == "Period"));
    }

    #[test]
    fn parses_literals_equality_and_logic() {
        let expr = parse("Patient.deceased.exists() and Patient.deceased != false").unwrap();
        let Expr::And(_, right) = expr else { panic!() };
        assert!(matches!(*right, Expr::Equals(_, ref b, true) if **b == Expr::Bool(false)));
        let expr = parse("telecom.where(system='phone')").unwrap();
        let Expr::Call(_, _, args) = expr else {
            panic!()
        };
        assert_eq!(
            args[0],
            Expr::Equals(
                Box::new(member(Expr::This, "system")),
                Box::new(Expr::Str("phone".into())),
                false
            )
        );
        assert!(matches!(
            parse("Bundle.entry[0].resource").unwrap(),
            Expr::Member(_, _)
        ));
    }

    #[test]
    fn operators_bind_as_the_specification_orders_them() {
        // implies < or < and < = < comparison < | < is < + < *
        let expr = parse("a implies b or c and d = e + f * g").unwrap();
        let Expr::Binary(Op::Implies, _, right) = expr else {
            panic!()
        };
        let Expr::Or(_, right) = *right else { panic!() };
        let Expr::And(_, right) = *right else {
            panic!()
        };
        let Expr::Equals(_, right, false) = *right else {
            panic!()
        };
        let Expr::Binary(Op::Add, _, right) = *right else {
            panic!()
        };
        assert!(matches!(*right, Expr::Binary(Op::Multiply, _, _)));
        assert!(matches!(
            parse("a.count() > 1 xor b <= 2").unwrap(),
            Expr::Binary(Op::Xor, _, _)
        ));
        assert!(matches!(
            parse("system = %ucum").unwrap(),
            Expr::Equals(_, ref v, false) if **v == Expr::Env("ucum".into())
        ));
        assert!(matches!(
            parse("%`vs-x` ~ {}").unwrap(),
            Expr::Binary(Op::Equivalent(false), ref l, ref r)
                if **l == Expr::Env("vs-x".into()) && **r == Expr::Empty
        ));
        assert!(
            matches!(parse("-1 + 2").unwrap(), Expr::Binary(Op::Add, ref l, _) if matches!(**l, Expr::Negate(_)))
        );
        assert!(
            matches!(parse("a in b | c").unwrap(), Expr::Binary(Op::In, _, ref r) if matches!(**r, Expr::Union(_, _)))
        );
        assert!(matches!(
            parse("x.contains('.')").unwrap(),
            Expr::Call(_, _, _)
        ));
    }

    #[test]
    fn reports_errors_with_their_position() {
        assert_eq!(parse("Patient.").unwrap_err().at, 8);
        assert!(parse("a.where(b").is_err());
        assert!(parse("'open").is_err());
        assert!(parse("a # b").is_err());
        assert!(parse("a b").is_err());
    }
}
