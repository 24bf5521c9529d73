//! A small SQL lexer shared by the statement readers (transaction pooling's
//! pinning rules, the router's classifier): words, quoted identifiers,
//! literals and punctuation, with comments, string literals (standard, E''
//! escapes), quoted identifiers and dollar-quoted bodies skipped whole, so
//! keywords inside them never count. It allocates nothing and never fails:
//! unterminated input just ends the token stream.

#[derive(Debug)]
pub(crate) enum Token<'a> {
    Word(&'a [u8]),
    /// A quoted identifier, unquoted (doubled quotes kept).
    Quoted(&'a [u8]),
    /// A string literal or dollar-quoted body (content not kept).
    Literal,
    Semicolon,
    Other(u8),
    /// A comment's text, delimiters removed (only from [`Lexer::with_comments`]).
    Comment(&'a [u8]),
}

pub(crate) struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
    comments: bool,
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(s: &'a [u8]) -> Self {
        Lexer { s, i: 0, comments: false }
    }

    /// A lexer that also yields comments (for routing hints).
    pub(crate) fn with_comments(s: &'a [u8]) -> Self {
        Lexer { s, i: 0, comments: true }
    }

    fn peek(&self, at: usize) -> u8 {
        self.s.get(self.i + at).copied().unwrap_or(0)
    }

    fn skip_block_comment(&mut self) {
        // Nested, as in PostgreSQL.
        let mut depth = 0usize;
        while self.i < self.s.len() {
            if self.peek(0) == b'/' && self.peek(1) == b'*' {
                depth += 1;
                self.i += 2;
            } else if self.peek(0) == b'*' && self.peek(1) == b'/' {
                depth -= 1;
                self.i += 2;
                if depth == 0 {
                    return;
                }
            } else {
                self.i += 1;
            }
        }
    }

    fn skip_string(&mut self, backslash_escapes: bool) {
        self.i += 1; // opening quote
        while self.i < self.s.len() {
            match self.s[self.i] {
                b'\\' if backslash_escapes => self.i += 2,
                b'\'' if self.peek(1) == b'\'' => self.i += 2,
                b'\'' => {
                    self.i += 1;
                    return;
                }
                _ => self.i += 1,
            }
        }
    }

    /// At `$`: a dollar-quote opening (`$$` or `$tag$`) is skipped through its
    /// closing tag; anything else (`$1`) is one character.
    fn try_dollar_quote(&mut self) -> bool {
        let start = self.i;
        let mut j = start + 1;
        while j < self.s.len() && (self.s[j].is_ascii_alphanumeric() || self.s[j] == b'_' || self.s[j] >= 0x80) {
            j += 1;
        }
        if j >= self.s.len() || self.s[j] != b'$' || self.s.get(start + 1).is_some_and(|c| c.is_ascii_digit()) {
            return false;
        }
        let tag = &self.s[start..=j];
        let body = j + 1;
        match self.s[body..].windows(tag.len()).position(|w| w == tag) {
            Some(p) => self.i = body + p + tag.len(),
            None => self.i = self.s.len(),
        }
        true
    }
}

impl<'a> Iterator for Lexer<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        loop {
            let c = *self.s.get(self.i)?;
            match c {
                c if c.is_ascii_whitespace() => self.i += 1,
                b'-' if self.peek(1) == b'-' => {
                    let start = self.i + 2;
                    while self.i < self.s.len() && self.s[self.i] != b'\n' {
                        self.i += 1;
                    }
                    if self.comments {
                        return Some(Token::Comment(&self.s[start.min(self.i)..self.i]));
                    }
                }
                b'/' if self.peek(1) == b'*' => {
                    let start = self.i + 2;
                    self.skip_block_comment();
                    if self.comments {
                        let end = self.i.saturating_sub(2).max(start.min(self.i));
                        return Some(Token::Comment(&self.s[start.min(end)..end]));
                    }
                }
                b'\'' => {
                    self.skip_string(false);
                    return Some(Token::Literal);
                }
                b'"' => {
                    let start = self.i + 1;
                    self.i += 1;
                    while self.i < self.s.len() {
                        if self.s[self.i] == b'"' {
                            if self.peek(1) == b'"' {
                                self.i += 2;
                                continue;
                            }
                            break;
                        }
                        self.i += 1;
                    }
                    let end = self.i.min(self.s.len());
                    self.i = (self.i + 1).min(self.s.len());
                    return Some(Token::Quoted(&self.s[start..end]));
                }
                b'$' => {
                    if self.try_dollar_quote() {
                        return Some(Token::Literal);
                    }
                    self.i += 1;
                    return Some(Token::Other(b'$'));
                }
                b';' => {
                    self.i += 1;
                    return Some(Token::Semicolon);
                }
                c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                    // E'...' / e'...': a string with backslash escapes.
                    if (c == b'e' || c == b'E') && self.peek(1) == b'\'' {
                        self.i += 1;
                        self.skip_string(true);
                        return Some(Token::Literal);
                    }
                    let start = self.i;
                    while self.i < self.s.len() {
                        let d = self.s[self.i];
                        if d.is_ascii_alphanumeric() || d == b'_' || d == b'$' || d >= 0x80 {
                            self.i += 1;
                        } else {
                            break;
                        }
                    }
                    // U&'...', B'...', X'...', N'...': the literal follows the word.
                    return Some(Token::Word(&self.s[start..self.i]));
                }
                c => {
                    self.i += 1;
                    return Some(Token::Other(c));
                }
            }
        }
    }
}

/// True when `word` is the keyword `kw` (ASCII case-insensitive).
pub(crate) fn is(word: &[u8], kw: &str) -> bool {
    word.eq_ignore_ascii_case(kw.as_bytes())
}

/// Appends `s` as an escape-string literal, safe whatever
/// standard_conforming_strings is.
pub(crate) fn push_literal(sql: &mut String, s: &str) {
    sql.push_str("E'");
    for c in s.chars() {
        match c {
            '\'' => sql.push_str("''"),
            '\\' => sql.push_str("\\\\"),
            '\0' => {}
            c => sql.push(c),
        }
    }
    sql.push('\'');
}
