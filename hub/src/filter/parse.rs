//! The filter language's syntax: CEL's expression grammar (a subset that covers what a
//! traffic filter needs), tokens and a precedence-climbing parser into [`Expr`]. Every
//! node keeps the character position it starts at, for error messages.
//!
//! ```text
//! expr    = or ("?" expr ":" expr)?
//! or      = and (("||" | "or") and)*
//! and     = rel (("&&" | "and") rel)*
//! rel     = add (("==" | "!=" | "<" | "<=" | ">" | ">=" | "in") add)*
//! add     = mul (("+" | "-") mul)*
//! mul     = unary (("*" | "/" | "%") unary)*
//! unary   = ("!" | "not" | "-") unary | member
//! member  = primary ("." IDENT ("(" args ")")? | "[" expr "]")*
//! primary = literal | IDENT ("(" args ")")? | "(" expr ")" | "[" args "]"
//! ```

use super::FilterError;

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    Ident(String),
    Int(i64),
    Double(f64),
    Str(String),
    Op(&'static str),
    End,
}

#[derive(Clone, Debug)]
pub struct Token {
    pub tok: Tok,
    /// Character offset of the token's first character.
    pub pos: usize,
}

const OPS: &[&str] = &["&&", "||", "==", "!=", "<=", ">=", "<", ">", "!", "+", "-", "*", "/", "%", "(", ")", "[", "]", ".", ",", "?", ":"];

pub fn lex(src: &str) -> Result<Vec<Token>, FilterError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if c.is_ascii_alphabetic() || c == '_' {
            // r"raw" strings: no escapes
            if (c == 'r' || c == 'R') && matches!(chars.get(i + 1), Some('"' | '\'')) {
                let (s, next) = string(&chars, i + 1, true)?;
                out.push(Token { tok: Tok::Str(s), pos: start });
                i = next;
                continue;
            }
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token { tok: Tok::Ident(chars[start..i].iter().collect()), pos: start });
            continue;
        }
        if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                // a method call on a number literal is not a thing here: "1.x" is an error below
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            let text = text.strip_suffix(['u', 'U']).unwrap_or(&text);
            let tok = if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
                i64::from_str_radix(hex, 16).ok().map(Tok::Int)
            } else if text.contains(['.', 'e', 'E']) {
                text.parse::<f64>().ok().map(Tok::Double)
            } else {
                text.parse::<i64>().ok().map(Tok::Int)
            };
            let tok = tok.ok_or_else(|| FilterError::new(format!("bad number `{text}`"), start))?;
            out.push(Token { tok, pos: start });
            continue;
        }
        if c == '"' || c == '\'' {
            let (s, next) = string(&chars, i, false)?;
            out.push(Token { tok: Tok::Str(s), pos: start });
            i = next;
            continue;
        }
        let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
        match OPS.iter().find(|op| rest.starts_with(**op)) {
            Some(op) => {
                out.push(Token { tok: Tok::Op(op), pos: start });
                i += op.chars().count();
            }
            None if c == '=' => return Err(FilterError::new("`=` is not an operator: compare with `==`", start)),
            None if c == '&' || c == '|' => return Err(FilterError::new(format!("`{c}` alone is not an operator: use `{c}{c}`"), start)),
            None => return Err(FilterError::new(format!("unexpected character {c:?}"), start)),
        }
    }
    out.push(Token { tok: Tok::End, pos: chars.len() });
    Ok(out)
}

/// A quoted string from `chars[at]` (the quote); returns it and the index after it.
fn string(chars: &[char], at: usize, raw: bool) -> Result<(String, usize), FilterError> {
    let q = chars[at];
    let triple = chars.get(at + 1) == Some(&q) && chars.get(at + 2) == Some(&q);
    let mut i = at + if triple { 3 } else { 1 };
    let mut s = String::new();
    loop {
        let Some(&c) = chars.get(i) else { return Err(FilterError::new("string not closed", at)) };
        if c == q && (!triple || (chars.get(i + 1) == Some(&q) && chars.get(i + 2) == Some(&q))) {
            return Ok((s, i + if triple { 3 } else { 1 }));
        }
        if c == '\n' && !triple {
            return Err(FilterError::new("string not closed before the end of the line", at));
        }
        if c == '\\' && !raw {
            let Some(&e) = chars.get(i + 1) else { return Err(FilterError::new("string not closed", at)) };
            let simple = match e {
                'n' => Some('\n'),
                't' => Some('\t'),
                'r' => Some('\r'),
                '0' => Some('\0'),
                '\\' | '"' | '\'' | '`' | '?' => Some(e),
                _ => None,
            };
            if let Some(ch) = simple {
                s.push(ch);
                i += 2;
                continue;
            }
            let digits = match e {
                'x' => 2,
                'u' => 4,
                'U' => 8,
                _ => return Err(FilterError::new(format!("unknown escape `\\{e}`"), i)),
            };
            let hex: String = chars.get(i + 2..i + 2 + digits).map(|h| h.iter().collect()).unwrap_or_default();
            let ch = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32);
            s.push(ch.ok_or_else(|| FilterError::new(format!("bad escape `\\{e}{hex}`"), i))?);
            i += 2 + digits;
            continue;
        }
        s.push(c);
        i += 1;
    }
}

#[derive(Clone, Debug)]
pub struct Expr {
    pub kind: Kind,
    pub pos: usize,
}

#[derive(Clone, Debug)]
pub enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    Double(f64),
    Str(String),
    List(Vec<Expr>),
    Ident(String),
    /// `a.b`
    Member(Box<Expr>, String),
    /// `a[b]`
    Index(Box<Expr>, Box<Expr>),
    /// `f(args)` (target None) or `x.f(args)`
    Call(Option<Box<Expr>>, String, Vec<Expr>),
    Unary(&'static str, Box<Expr>),
    Binary(&'static str, Box<Expr>, Box<Expr>),
    /// `a && b && ...` or `a || b || ...`, flat: long chains do not nest.
    Logic(&'static str, Vec<Expr>),
    Cond(Box<Expr>, Box<Expr>, Box<Expr>),
}

pub struct Parser {
    toks: Vec<Token>,
    at: usize,
    depth: usize,
}

/// Nesting deeper than this is refused (a stack-safe parser for hostile input).
const MAX_DEPTH: usize = 64;

impl Parser {
    pub fn parse(src: &str) -> Result<Expr, FilterError> {
        let mut p = Parser { toks: lex(src)?, at: 0, depth: 0 };
        if p.peek().tok == Tok::End {
            return Err(FilterError::new("empty filter", 0));
        }
        let e = p.expr()?;
        let t = p.peek();
        if t.tok != Tok::End {
            return Err(FilterError::new(format!("unexpected {} after a complete expression", describe(&t.tok)), t.pos));
        }
        Ok(e)
    }

    fn peek(&self) -> &Token {
        &self.toks[self.at.min(self.toks.len() - 1)]
    }

    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        if self.at < self.toks.len() - 1 {
            self.at += 1;
        }
        t
    }

    fn is_op(&self, op: &str) -> bool {
        matches!(&self.peek().tok, Tok::Op(o) if *o == op)
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(&self.peek().tok, Tok::Ident(i) if i == w)
    }

    fn expect(&mut self, op: &str) -> Result<Token, FilterError> {
        if self.is_op(op) {
            return Ok(self.next());
        }
        let t = self.peek();
        Err(FilterError::new(format!("expected `{op}`, found {}", describe(&t.tok)), t.pos))
    }

    fn enter(&mut self) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(FilterError::new(format!("expression nested deeper than {MAX_DEPTH} levels"), self.peek().pos));
        }
        Ok(())
    }

    fn expr(&mut self) -> Result<Expr, FilterError> {
        self.enter()?;
        let c = self.or()?;
        let out = if self.is_op("?") {
            self.next();
            let a = self.expr()?;
            self.expect(":")?;
            let b = self.expr()?;
            Expr { pos: c.pos, kind: Kind::Cond(Box::new(c), Box::new(a), Box::new(b)) }
        } else {
            c
        };
        self.depth -= 1;
        Ok(out)
    }

    fn binary(&mut self, ops: &[(&str, &'static str)], next: fn(&mut Self) -> Result<Expr, FilterError>) -> Result<Expr, FilterError> {
        let mut l = next(self)?;
        let mut chain = 0;
        loop {
            let op = ops.iter().find(|(text, _)| if text.chars().all(|c| c.is_ascii_alphabetic()) { self.is_word(text) } else { self.is_op(text) });
            let Some((_, op)) = op else { return Ok(l) };
            let t = self.next();
            let r = next(self)?;
            if *op == "&&" || *op == "||" {
                match &mut l.kind {
                    Kind::Logic(o, terms) if o == op => terms.push(r),
                    _ => l = Expr { pos: l.pos, kind: Kind::Logic(op, vec![l, r]) },
                }
                continue;
            }
            chain += 1;
            if chain > MAX_DEPTH {
                return Err(FilterError::new(format!("more than {MAX_DEPTH} `{op}` in a row"), t.pos));
            }
            l = Expr { pos: t.pos, kind: Kind::Binary(op, Box::new(l), Box::new(r)) };
        }
    }

    fn or(&mut self) -> Result<Expr, FilterError> {
        self.binary(&[("||", "||"), ("or", "||")], Self::and)
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        self.binary(&[("&&", "&&"), ("and", "&&")], Self::rel)
    }

    fn rel(&mut self) -> Result<Expr, FilterError> {
        self.binary(&[("==", "=="), ("!=", "!="), ("<=", "<="), (">=", ">="), ("<", "<"), (">", ">"), ("in", "in")], Self::add)
    }

    fn add(&mut self) -> Result<Expr, FilterError> {
        self.binary(&[("+", "+"), ("-", "-")], Self::mul)
    }

    fn mul(&mut self) -> Result<Expr, FilterError> {
        self.binary(&[("*", "*"), ("/", "/"), ("%", "%")], Self::unary)
    }

    fn unary(&mut self) -> Result<Expr, FilterError> {
        let op = if self.is_op("!") || self.is_word("not") {
            Some("!")
        } else if self.is_op("-") {
            Some("-")
        } else {
            None
        };
        let Some(op) = op else { return self.member() };
        let t = self.next();
        self.enter()?;
        let e = self.unary()?;
        self.depth -= 1;
        Ok(match (op, e.kind) {
            ("-", Kind::Int(n)) => Expr { pos: t.pos, kind: Kind::Int(-n) },
            ("-", Kind::Double(n)) => Expr { pos: t.pos, kind: Kind::Double(-n) },
            (_, kind) => Expr { pos: t.pos, kind: Kind::Unary(op, Box::new(Expr { pos: e.pos, kind })) },
        })
    }

    fn args(&mut self, close: &str) -> Result<Vec<Expr>, FilterError> {
        let mut v = Vec::new();
        if self.is_op(close) {
            self.next();
            return Ok(v);
        }
        loop {
            v.push(self.expr()?);
            if self.is_op(",") {
                self.next();
                if self.is_op(close) {
                    self.next();
                    return Ok(v);
                }
                continue;
            }
            self.expect(close)?;
            return Ok(v);
        }
    }

    fn member(&mut self) -> Result<Expr, FilterError> {
        let mut e = self.primary()?;
        for n in 0.. {
            let t = self.peek().clone();
            if (self.is_op(".") || self.is_op("[")) && n >= MAX_DEPTH {
                return Err(FilterError::new(format!("more than {MAX_DEPTH} fields, indexes or calls in a row"), t.pos));
            }
            if self.is_op(".") {
                self.next();
                let t = self.next();
                let Tok::Ident(name) = t.tok else {
                    return Err(FilterError::new(format!("expected a field or method name after `.`, found {}", describe(&t.tok)), t.pos));
                };
                if self.is_op("(") {
                    self.next();
                    let args = self.args(")")?;
                    e = Expr { pos: t.pos, kind: Kind::Call(Some(Box::new(e)), name, args) };
                } else {
                    e = Expr { pos: t.pos, kind: Kind::Member(Box::new(e), name) };
                }
            } else if self.is_op("[") {
                self.next();
                let i = self.expr()?;
                self.expect("]")?;
                e = Expr { pos: t.pos, kind: Kind::Index(Box::new(e), Box::new(i)) };
            } else {
                break;
            }
        }
        Ok(e)
    }

    fn primary(&mut self) -> Result<Expr, FilterError> {
        let t = self.next();
        let kind = match t.tok {
            Tok::Int(n) => Kind::Int(n),
            Tok::Double(n) => Kind::Double(n),
            Tok::Str(s) => Kind::Str(s),
            Tok::Ident(w) => match w.as_str() {
                "true" => Kind::Bool(true),
                "false" => Kind::Bool(false),
                "null" => Kind::Null,
                "and" | "or" | "in" => return Err(FilterError::new(format!("`{w}` needs something on its left"), t.pos)),
                _ if self.is_op("(") => {
                    self.next();
                    Kind::Call(None, w, self.args(")")?)
                }
                _ => Kind::Ident(w),
            },
            Tok::Op("(") => {
                let e = self.expr()?;
                self.expect(")")?;
                return Ok(e);
            }
            Tok::Op("[") => Kind::List(self.args("]")?),
            Tok::End => return Err(FilterError::new("the filter ends too early: a value is missing", t.pos)),
            other => return Err(FilterError::new(format!("expected a value, found {}", describe(&other)), t.pos)),
        };
        Ok(Expr { kind, pos: t.pos })
    }
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(i) => format!("`{i}`"),
        Tok::Int(n) => format!("`{n}`"),
        Tok::Double(n) => format!("`{n}`"),
        Tok::Str(s) => format!("{s:?}"),
        Tok::Op(o) => format!("`{o}`"),
        Tok::End => "the end".into(),
    }
}
