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
    let error = |at: usize, message: &str| ParseError {
        at,
        message: message.to_string(),
    };
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'\'' => {
                let mut value = String::new();
                i += 1;
                loop {
                    match bytes.get(i) {
                        None => return Err(error(start, "unterminated string")),
                        Some(b'\'') => break,
                        Some(b'\\') => {
                            let escaped =
                                *bytes.get(i + 1).ok_or_else(|| error(i, "bad escape"))?;
                            value.push(match escaped {
                                b'n' => '\n',
                                b't' => '\t',
                                b'r' => '\r',
                                other => other as char,
                            });
                            i += 2;
                        }
                        Some(_) => {
                            let ch = text[i..].chars().next().expect("a char");
                            value.push(ch);
                            i += ch.len_utf8();
                        }
                    }
                }
                i += 1;
                tokens.push((start, Token::Str(value)));
            }
            b'`' => {
                let end = text[i + 1..]
                    .find('`')
                    .ok_or_else(|| error(start, "unterminated `identifier`"))?;
                tokens.push((start, Token::Ident(text[i + 1..i + 1 + end].to_string())));
                i += end + 2;
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
                let number = text[start..i]
                    .parse()
                    .map_err(|_| error(start, "bad number"))?;
                tokens.push((start, Token::Number(number)));
            }
            b'%' => {
                let rest = &text[i + 1..];
                let (name, length) = match rest.as_bytes().first() {
                    Some(quote @ (b'`' | b'\'')) => {
                        let end = rest[1..]
                            .find(*quote as char)
                            .ok_or_else(|| error(start, "unterminated %variable"))?;
                        (&rest[1..1 + end], end + 2)
                    }
                    _ => {
                        let end = rest
                            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                            .unwrap_or(rest.len());
                        (&rest[..end], end)
                    }
                };
                if name.is_empty() {
                    return Err(error(start, "expected a variable name after '%'"));
                }
                tokens.push((start, Token::Env(name.to_string())));
                i += 1 + length;
            }
            b'$' | b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                i += 1;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                tokens.push((start, Token::Ident(text[start..i].to_string())));
            }
            _ => {
                let symbol = SYMBOLS
                    .iter()
                    .copied()
                    .find(|s| text[i..].starts_with(s))
                    .ok_or_else(|| error(start, &format!("unexpected '{}'", c as char)))?;
                i += symbol.len();
                tokens.push((start, Token::Symbol(symbol)));
            }
        }
    }
    Ok(tokens)
}

/// Parses a FHIRPath expression.
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    let tokens = tokenize(text)?;
    let mut parser = Parser {
        tokens,
        at: 0,
        end: text.len(),
    };
    let expr = parser.expression()?;
    match parser.tokens.get(parser.at) {
        None => Ok(expr),
        Some((at, token)) => Err(ParseError {
            at: *at,
            message: format!("unexpected {token:?}"),
        }),
    }
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    at: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at).map(|(_, t)| t)
    }

    fn position(&self) -> usize {
        self.tokens.get(self.at).map_or(self.end, |(at, _)| *at)
    }

    fn error<T>(&self, message: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            at: self.position(),
            message: message.into(),
        })
    }

    fn eat_symbol(&mut self, symbol: &str) -> bool {
        if matches!(self.peek(), Some(Token::Symbol(s)) if *s == symbol) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn eat_keyword(&mut self, keyword: &str) -> bool {
        if matches!(self.peek(), Some(Token::Ident(word)) if word == keyword) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect_symbol(&mut self, symbol: &str) -> Result<(), ParseError> {
        if self.eat_symbol(symbol) {
            Ok(())
        } else {
            self.error(format!("expected '{symbol}'"))
        }
    }

    /// A whole expression: `implies`, the loosest operator.
    fn expression(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.or()?;
        while self.eat_keyword("implies") {
            left = binary(Op::Implies, left, self.or()?);
        }
        Ok(left)
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.and()?;
        loop {
            if self.eat_keyword("or") {
                left = Expr::Or(Box::new(left), Box::new(self.and()?));
            } else if self.eat_keyword("xor") {
                left = binary(Op::Xor, left, self.and()?);
            } else {
                return Ok(left);
            }
        }
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.membership()?;
        while self.eat_keyword("and") {
            left = Expr::And(Box::new(left), Box::new(self.membership()?));
        }
        Ok(left)
    }

    fn membership(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.equality()?;
        loop {
            let op = if self.eat_keyword("in") {
                Op::In
            } else if self.eat_keyword("contains") {
                Op::Contains
            } else {
                return Ok(left);
            };
            left = binary(op, left, self.equality()?);
        }
    }

    fn equality(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.comparison()?;
        loop {
            left = if self.eat_symbol("=") {
                Expr::Equals(Box::new(left), Box::new(self.comparison()?), false)
            } else if self.eat_symbol("!=") {
                Expr::Equals(Box::new(left), Box::new(self.comparison()?), true)
            } else if self.eat_symbol("~") {
                binary(Op::Equivalent(false), left, self.comparison()?)
            } else if self.eat_symbol("!~") {
                binary(Op::Equivalent(true), left, self.comparison()?)
            } else {
                return Ok(left);
            };
        }
    }

    fn comparison(&mut self) -> Result<Expr, ParseError> {
        self.left_associative(
            &[
                ("<=", Op::LessOrEqual),
                (">=", Op::GreaterOrEqual),
                ("<", Op::Less),
                (">", Op::Greater),
            ],
            &[],
            Self::union,
        )
    }

    fn union(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.type_expression()?;
        while self.eat_symbol("|") {
            left = Expr::Union(Box::new(left), Box::new(self.type_expression()?));
        }
        Ok(left)
    }

    fn additive(&mut self) -> Result<Expr, ParseError> {
        self.left_associative(
            &[("+", Op::Add), ("-", Op::Subtract), ("&", Op::Concatenate)],
            &[],
            Self::multiplicative,
        )
    }

    fn multiplicative(&mut self) -> Result<Expr, ParseError> {
        self.left_associative(
            &[("*", Op::Multiply), ("/", Op::Divide)],
            &[("div", Op::IntegerDivide), ("mod", Op::Modulo)],
            Self::unary,
        )
    }

    /// `next (op next)*` for the operators written as `symbols` or as `keywords`.
    fn left_associative(
        &mut self,
        symbols: &[(&str, Op)],
        keywords: &[(&str, Op)],
        next: fn(&mut Self) -> Result<Expr, ParseError>,
    ) -> Result<Expr, ParseError> {
        let mut left = next(self)?;
        loop {
            let op = symbols
                .iter()
                .find(|(symbol, _)| self.eat_symbol(symbol))
                .or_else(|| keywords.iter().find(|(word, _)| self.eat_keyword(word)));
            match op {
                Some((_, op)) => left = binary(*op, left, next(self)?),
                None => return Ok(left),
            }
        }
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.eat_symbol("-") {
            return Ok(Expr::Negate(Box::new(self.unary()?)));
        }
        if self.eat_symbol("+") {
            return self.unary();
        }
        self.postfix()
    }

    fn type_expression(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.additive()?;
        loop {
            if self.eat_keyword("is") {
                left = Expr::Is(Box::new(left), self.type_name()?);
            } else if self.eat_keyword("as") {
                left = Expr::As(Box::new(left), self.type_name()?);
            } else {
                return Ok(left);
            }
        }
    }

    /// `Name` or `FHIR.Name` / `System.Name`.
    fn type_name(&mut self) -> Result<String, ParseError> {
        let mut name = self.identifier()?;
        while self.eat_symbol(".") {
            name = self.identifier()?;
        }
        Ok(name)
    }

    fn identifier(&mut self) -> Result<String, ParseError> {
        match self.peek().cloned() {
            Some(Token::Ident(name)) => {
                self.at += 1;
                Ok(name)
            }
            _ => self.error("expected a name"),
        }
    }

    fn postfix(&mut self) -> Result<Expr, ParseError> {
        let mut expr = self.term()?;
        loop {
            if self.eat_symbol(".") {
                expr = self.invocation(expr)?;
            } else if self.eat_symbol("[") {
                let index = match self.peek().cloned() {
                    Some(Token::Number(n)) if n >= 0.0 && n.fract() == 0.0 => {
                        self.at += 1;
                        n as usize
                    }
                    _ => return self.error("expected an index"),
                };
                self.expect_symbol("]")?;
                expr = Expr::Index(Box::new(expr), index);
            } else {
                return Ok(expr);
            }
        }
    }

    /// `name` or `name(args)` applied to `input`.
    fn invocation(&mut self, input: Expr) -> Result<Expr, ParseError> {
        let name = self.identifier()?;
        if !self.eat_symbol("(") {
            return Ok(Expr::Member(Box::new(input), name));
        }
        let mut args = Vec::new();
        if !self.eat_symbol(")") {
            loop {
                args.push(self.expression()?);
                if self.eat_symbol(")") {
                    break;
                }
                self.expect_symbol(",")?;
            }
        }
        Ok(Expr::Call(Box::new(input), name, args))
    }

    fn term(&mut self) -> Result<Expr, ParseError> {
        match self.peek().cloned() {
            Some(Token::Str(value)) => {
                self.at += 1;
                Ok(Expr::Str(value))
            }
            Some(Token::Number(value)) => {
                self.at += 1;
                Ok(Expr::Number(value))
            }
            Some(Token::Symbol("(")) => {
                self.at += 1;
                let inner = self.expression()?;
                self.expect_symbol(")")?;
                Ok(inner)
            }
            Some(Token::Symbol("{")) => {
                self.at += 1;
                self.expect_symbol("}")?;
                Ok(Expr::Empty)
            }
            Some(Token::Env(name)) => {
                self.at += 1;
                Ok(Expr::Env(name))
            }
            Some(Token::Ident(word)) => match word.as_str() {
                "true" | "false" => {
                    self.at += 1;
                    Ok(Expr::Bool(word == "true"))
                }
                "$this" => {
                    self.at += 1;
                    Ok(Expr::This)
                }
                _ => self.invocation(Expr::This),
            },
            _ => self.error("expected an expression"),
        }
    }
}

fn binary(op: Op, left: Expr, right: Expr) -> Expr {
    Expr::Binary(op, Box::new(left), Box::new(right))
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
