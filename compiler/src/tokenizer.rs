//! llama2.c's tokenizer `.bin`: an i32 maximum token length, then per token
//! an f32 merge score, an i32 byte length and the bytes.

use crate::model::ModelError;
use std::path::Path;

#[derive(Clone, Debug)]
pub struct Tokenizer {
    pub vocab: Vec<Vec<u8>>,
    pub scores: Vec<f32>,
}

/// The beginning-of-sequence token.
pub const BOS: u32 = 1;

impl Tokenizer {
    pub fn load(path: &Path, vocab_size: usize) -> Result<Tokenizer, ModelError> {
        let file = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| ModelError::Format {
            file: file.clone(),
            message: format!("cannot read: {e}"),
        })?;
        Tokenizer::parse(&bytes, vocab_size, &file)
    }

    pub fn parse(bytes: &[u8], vocab_size: usize, file: &str) -> Result<Tokenizer, ModelError> {
        let err = |message: String| ModelError::Format {
            file: file.to_string(),
            message,
        };
        if bytes.len() < 4 {
            return Err(err(format!(
                "{} bytes is too short for the tokenizer's 4-byte header",
                bytes.len()
            )));
        }
        let mut at = 4usize;
        let (mut vocab, mut scores) = (
            Vec::with_capacity(vocab_size),
            Vec::with_capacity(vocab_size),
        );
        for i in 0..vocab_size {
            let head = bytes
                .get(at..at + 8)
                .ok_or_else(|| err(format!("truncated at token {i} of {vocab_size}")))?;
            let score = f32::from_le_bytes(head[..4].try_into().unwrap());
            if score.is_nan() {
                return Err(err(format!("token {i} has a NaN merge score")));
            }
            let len = i32::from_le_bytes(head[4..].try_into().unwrap());
            let len =
                usize::try_from(len).map_err(|_| err(format!("token {i} has length {len}")))?;
            let piece = bytes
                .get(at + 8..at + 8 + len)
                .ok_or_else(|| err(format!("truncated in token {i}'s {len} bytes")))?;
            vocab.push(piece.to_vec());
            scores.push(score);
            at += 8 + len;
        }
        if at != bytes.len() {
            return Err(err(format!(
                "{} bytes left after {vocab_size} tokens: does the tokenizer match the model's vocabulary?",
                bytes.len() - at
            )));
        }
        Ok(Tokenizer { vocab, scores })
    }

    /// The bytes `token` stands for after `prev`, as llama2.c prints them: a
    /// leading space after BOS is dropped, and `<0xXX>` pieces are raw bytes.
    pub fn decode(&self, prev: u32, token: u32) -> Vec<u8> {
        let Some(piece) = self.vocab.get(token as usize) else {
            return Vec::new();
        };
        let piece = if prev == BOS && piece.first() == Some(&b' ') {
            &piece[1..]
        } else {
            &piece[..]
        };
        if piece.len() == 6
            && piece.starts_with(b"<0x")
            && piece.ends_with(b">")
            && let Ok(b) = u8::from_str_radix(std::str::from_utf8(&piece[3..5]).unwrap_or(""), 16)
        {
            return vec![b];
        }
        piece.to_vec()
    }

    /// Tokens for `text` (without BOS), as llama2.c's encoder makes them: a
    /// leading space is added (sentencepiece's dummy prefix), each UTF-8
    /// character becomes its token or, if it has none, one token per byte
    /// (`<0xXX>`, ids 3..259), then the adjacent pair whose merged piece has
    /// the highest score is merged (the leftmost of equals) until none is in
    /// the vocabulary.
    ///
    /// llama2.c rescans every pair after each merge (quadratic in the
    /// text); here the candidate pairs wait in a priority queue keyed by
    /// (score, leftmost position), and a merge only adds the two pairs it
    /// creates, so a long prompt costs O(n log n) with the same merges.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        use std::collections::BinaryHeap;
        let lookup: std::collections::HashMap<&[u8], u32> = self
            .vocab
            .iter()
            .enumerate()
            .map(|(i, p)| (p.as_slice(), i as u32))
            .collect();
        let mut tokens: Vec<u32> = Vec::new();
        let prefixed = if text.is_empty() {
            String::new()
        } else {
            format!(" {text}")
        };
        for ch in prefixed.chars() {
            let mut buf = [0u8; 4];
            let bytes = ch.encode_utf8(&mut buf).as_bytes();
            match lookup.get(bytes) {
                Some(id) => tokens.push(*id),
                None => {
                    for b in bytes {
                        let id = *b as u32 + 3;
                        if id as usize >= self.vocab.len() {
                            return Err(ModelError::Format {
                                file: "the tokenizer".into(),
                                message: format!(
                                    "{ch:?} is not in its {}-token vocabulary and it has no byte token for 0x{b:02X} (id {id})",
                                    self.vocab.len()
                                ),
                            });
                        }
                        tokens.push(id);
                    }
                }
            }
        }
        // Symbols as a doubly linked list over the initial positions; a
        // merge keeps the left symbol's position, so positions stay in text
        // order and "leftmost" is "smallest position".
        let n = tokens.len();
        let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect();
        let mut next: Vec<usize> = (1..=n).collect();
        let mut alive = vec![true; n];
        // Max-heap of (score, Reverse(left position), left token, right
        // token, merged id); an entry is stale once either symbol changed.
        #[derive(PartialEq)]
        struct Pair(f32, std::cmp::Reverse<usize>, u32, u32, u32);
        impl Eq for Pair {}
        impl PartialOrd for Pair {
            fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(o))
            }
        }
        impl Ord for Pair {
            fn cmp(&self, o: &Self) -> std::cmp::Ordering {
                // Scores are never NaN (`parse` rejects them).
                self.0.total_cmp(&o.0).then(self.1.cmp(&o.1))
            }
        }
        let candidate = |tokens: &[u32], i: usize, j: usize| -> Option<Pair> {
            let merged = [
                self.vocab[tokens[i] as usize].as_slice(),
                self.vocab[tokens[j] as usize].as_slice(),
            ]
            .concat();
            let id = *lookup.get(merged.as_slice())?;
            Some(Pair(
                self.scores[id as usize],
                std::cmp::Reverse(i),
                tokens[i],
                tokens[j],
                id,
            ))
        };
        let mut heap: BinaryHeap<Pair> = (0..n.saturating_sub(1))
            .filter_map(|i| candidate(&tokens, i, i + 1))
            .collect();
        while let Some(Pair(_, std::cmp::Reverse(i), left, right, id)) = heap.pop() {
            let j = next[i];
            if !alive[i] || j >= n || tokens[i] != left || tokens[j] != right {
                continue;
            }
            tokens[i] = id;
            alive[j] = false;
            next[i] = next[j];
            if next[i] < n {
                prev[next[i]] = i;
            }
            if prev[i] < n
                && let Some(c) = candidate(&tokens, prev[i], i)
            {
                heap.push(c);
            }
            if next[i] < n
                && let Some(c) = candidate(&tokens, i, next[i])
            {
                heap.push(c);
            }
        }
        Ok((0..n).filter(|i| alive[*i]).map(|i| tokens[i]).collect())
    }

    /// The text of a generated sequence starting after BOS.
    pub fn text(&self, tokens: &[u32]) -> String {
        let mut out = Vec::new();
        let mut prev = BOS;
        for t in tokens {
            out.extend(self.decode(prev, *t));
            prev = *t;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}
