//! The cache key: SHA-256 of (role, method, the params' canonical text).
//!
//! The canonical text is built from the params' raw JSON text, never from a
//! decoded `serde_json::Value`: decoding rounds integers past 64 bits, folds
//! `-0.0` into `-0` and refuses lone surrogate escapes, and any of those would
//! let two different calls share a key (one caller answered with another's
//! result). So numbers and strings are copied byte for byte, exactly as
//! written; only whitespace and the order of object members are normalised.

use serde_json::value::RawValue;
use sha2::{Digest as _, Sha256};

/// Nesting deeper than this is not canonicalised: such params are simply not
/// cached. It bounds the scanner's recursion, so no input can exhaust the stack.
pub const MAX_DEPTH: usize = 128;

/// SHA-256 of (scope, method, canonical params).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey([u8; 32]);

/// Why params have no canonical form (the call then goes uncached).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Arrays and objects nest deeper than [`MAX_DEPTH`].
    #[error("params nest deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// The text is not JSON (callers pass validated params, so this is a bug upstream).
    #[error("params are not JSON at byte {0}")]
    Malformed(usize),
}

impl CacheKey {
    /// `scope` separates callers sharing one cache (a role name, or "").
    ///
    /// `null` params get a key of their own, distinct from absent ones: an agent
    /// may answer them differently, so the cache must not conflate them.
    pub fn new(scope: &str, method: &str, params: Option<&RawValue>) -> Result<Self, KeyError> {
        let mut hash = Sha256::new();
        // Length prefixes keep ("ab", "c") and ("a", "bc") apart.
        for part in [scope, method] {
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part.as_bytes());
        }
        match params {
            None => hash.update([0]),
            Some(params) => {
                hash.update([1]);
                hash.update(canonical_json(params.get())?);
            }
        }
        Ok(Self(hash.finalize().into()))
    }
}

/// The canonical form of a JSON text: no insignificant whitespace, object
/// members in the byte order of their keys as written (members with equal
/// keys keep their order), every number and string exactly as written.
///
/// Two texts get the same form exactly when they differ only in whitespace
/// and member order, so distinct params never share a key.
pub fn canonical_json(text: &str) -> Result<Vec<u8>, KeyError> {
    let mut scan = Scanner { text: text.as_bytes(), pos: 0, out: Vec::with_capacity(text.len()), members: Vec::new() };
    scan.value(0)?;
    scan.skip_whitespace();
    if scan.pos != scan.text.len() {
        return Err(KeyError::Malformed(scan.pos));
    }
    Ok(scan.out)
}

/// One object member in the output: where its key's text and the whole member lie.
#[derive(Debug, Clone, Copy)]
struct Member {
    key: (usize, usize),
    start: usize,
    end: usize,
}

struct Scanner<'a> {
    text: &'a [u8],
    pos: usize,
    out: Vec<u8>,
    /// Members of the objects being scanned, innermost last (one stack for all
    /// depths, so an object costs no allocation of its own).
    members: Vec<Member>,
}

impl Scanner<'_> {
    fn value(&mut self, depth: usize) -> Result<(), KeyError> {
        self.skip_whitespace();
        match self.text.get(self.pos) {
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string().map(drop),
            Some(_) => self.scalar(),
            None => Err(KeyError::Malformed(self.pos)),
        }
    }

    fn array(&mut self, depth: usize) -> Result<(), KeyError> {
        if depth > MAX_DEPTH {
            return Err(KeyError::TooDeep);
        }
        self.pos += 1;
        self.out.push(b'[');
        self.skip_whitespace();
        if self.eat(b']') {
            self.out.push(b']');
            return Ok(());
        }
        loop {
            self.value(depth)?;
            self.skip_whitespace();
            if self.eat(b']') {
                self.out.push(b']');
                return Ok(());
            }
            self.expect(b',')?;
            self.out.push(b',');
        }
    }

    fn object(&mut self, depth: usize) -> Result<(), KeyError> {
        if depth > MAX_DEPTH {
            return Err(KeyError::TooDeep);
        }
        self.pos += 1;
        self.out.push(b'{');
        let body = self.out.len();
        let base = self.members.len();
        self.skip_whitespace();
        if !self.eat(b'}') {
            loop {
                self.skip_whitespace();
                if self.members.len() > base {
                    self.out.push(b',');
                }
                let start = self.out.len();
                if self.text.get(self.pos) != Some(&b'"') {
                    return Err(KeyError::Malformed(self.pos));
                }
                let key = self.string()?;
                self.skip_whitespace();
                self.expect(b':')?;
                self.out.push(b':');
                self.value(depth)?;
                self.members.push(Member { key, start, end: self.out.len() });
                self.skip_whitespace();
                if self.eat(b'}') {
                    break;
                }
                self.expect(b',')?;
            }
        }
        self.sort_members(body, base);
        self.members.truncate(base);
        self.out.push(b'}');
        Ok(())
    }

    /// Puts the members written since `body` in key order, unless they already are.
    fn sort_members(&mut self, body: usize, base: usize) {
        let out = &self.out;
        let key = |m: &Member| &out[m.key.0..m.key.1];
        let members = &mut self.members[base..];
        if members.is_sorted_by(|a, b| key(a) <= key(b)) {
            return;
        }
        // Stable, so duplicate keys keep their order: an agent may take the
        // first or the last, and reordering them would change the params.
        members.sort_by(|a, b| key(a).cmp(key(b)));
        let mut sorted = Vec::with_capacity(out.len() - body);
        for (i, member) in members.iter().enumerate() {
            if i > 0 {
                sorted.push(b',');
            }
            sorted.extend_from_slice(&out[member.start..member.end]);
        }
        self.out.truncate(body);
        self.out.extend_from_slice(&sorted);
    }

    /// Copies a string, escapes as written; returns where its contents lie in the output.
    fn string(&mut self) -> Result<(usize, usize), KeyError> {
        let start = self.pos;
        let mut i = start + 1;
        loop {
            match self.text.get(i) {
                Some(b'"') => break,
                // The escaped byte is skipped so an escaped quote does not end the string.
                Some(b'\\') => i += 2,
                Some(_) => i += 1,
                None => return Err(KeyError::Malformed(start)),
            }
        }
        let contents = self.out.len() + 1;
        self.out.extend_from_slice(&self.text[start..=i]);
        self.pos = i + 1;
        Ok((contents, self.out.len() - 1))
    }

    /// Copies a number, `true`, `false` or `null` as written.
    fn scalar(&mut self) -> Result<(), KeyError> {
        let start = self.pos;
        let len = self.text[start..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'.'))
            .count();
        if len == 0 {
            return Err(KeyError::Malformed(start));
        }
        self.out.extend_from_slice(&self.text[start..start + len]);
        self.pos += len;
        Ok(())
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.text.get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.text.get(self.pos) == Some(&byte);
        self.pos += usize::from(found);
        found
    }

    fn expect(&mut self, byte: u8) -> Result<(), KeyError> {
        if self.eat(byte) { Ok(()) } else { Err(KeyError::Malformed(self.pos)) }
    }
}

#[cfg(test)]
#[path = "key_tests.rs"]
mod tests;
