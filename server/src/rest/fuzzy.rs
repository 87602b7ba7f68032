//! PostgREST's "Perhaps you meant …" matcher: a port of the Haskell `fuzzyset` library at the
//! version PostgREST pins (0.2.4, `fuzzyset >= 0.2.4 && < 0.3` in its cabal file). Pure; it
//! never fails: a search that finds nothing is an empty list.
//!
//! How the library scores (and so how this port does, step for step):
//! - an entry is kept under its lowercased text (`Text.toLower`); adding a text whose lowercase
//!   is already there changes nothing, and a search whose lowercase is an entry answers it with
//!   score 1;
//! - otherwise, for each gram size from the largest (3) down to the smallest (2), the search text
//!   and the entries are cut into grams of their *normalized* text (lowercase, only letters,
//!   digits, white space and commas kept, enclosed in `-`); entries sharing a gram are scored by
//!   the cosine of the two gram-count vectors, the best 50 are kept and scored again by the
//!   normalized Levenshtein similarity of the lowercased (not normalized) texts,
//!   `1 - distance / longer length`; the first gram size that leaves a result at or above the
//!   minimum score answers;
//! - equal scores keep their earlier order (Haskell's `sortBy` is stable): the order of the
//!   cosine scores, and for equal cosines the iteration order of the library's `HashMap Int`
//!   of entry indices (indices compared 5 bits at a time from the lowest, as its trie stores
//!   them). [`FuzzySet::from_list`] adds its list from the last value to the first, as the
//!   library's `fromList = foldr (flip add) defaultSet` does.
//!
//! Characters are classified as GHC does (`isAlphaNum`, `isSpace`) except that Rust's
//! `char::is_alphanumeric` also keeps the few combining marks Unicode calls `Other_Alphabetic`.

use std::collections::HashMap;

/// `getOne`/`get`'s minimum score.
pub const DEFAULT_MIN_SCORE: f64 = 0.33;

/// How many cosine-ranked candidates are scored again by edit distance.
const LEVENSHTEIN_CANDIDATES: usize = 50;

/// One entry as seen at one gram size.
#[derive(Debug, Clone)]
struct Item {
    /// The euclidean norm of the entry's gram-count vector.
    magnitude: f64,
    /// The lowercased entry (the key into `exact`).
    key: String,
}

/// A set of strings to search approximately (`Data.FuzzySet.FuzzySet`).
#[derive(Debug, Clone)]
pub struct FuzzySet {
    /// Lowercased entry → the entry as added.
    exact: HashMap<String, String>,
    /// Gram → (index of the entry among the items of the gram's size, count of the gram in it).
    /// Grams of different sizes differ in length, so one map serves every size.
    match_dict: HashMap<String, Vec<(usize, usize)>>,
    /// Gram size → the entries in the order they were added.
    items: HashMap<usize, Vec<Item>>,
    gram_size_lower: usize,
    gram_size_upper: usize,
    use_levenshtein: bool,
}

impl Default for FuzzySet {
    /// The library's `defaultSet`: gram sizes 2 to 3, Levenshtein rescoring on.
    fn default() -> Self {
        FuzzySet::new(2, 3, true)
    }
}

impl FuzzySet {
    /// An empty set with gram sizes `lower..=upper` (each at least 2).
    pub fn new(lower: usize, upper: usize, use_levenshtein: bool) -> Self {
        assert!(lower >= 2 && upper >= lower, "gram sizes start at 2");
        FuzzySet {
            exact: HashMap::new(),
            match_dict: HashMap::new(),
            items: HashMap::new(),
            gram_size_lower: lower,
            gram_size_upper: upper,
            use_levenshtein,
        }
    }

    /// The library's `fromList`: a default set holding `values`, added from the last to the first.
    pub fn from_list<S: AsRef<str>>(values: &[S]) -> Self {
        let mut set = FuzzySet::default();
        for v in values.iter().rev() {
            set.add(v.as_ref());
        }
        set
    }

    /// Adds `value` unless its lowercase is already an entry; says whether it was added.
    pub fn add(&mut self, value: &str) -> bool {
        let key = lowercase(value);
        if self.exact.contains_key(&key) {
            return false;
        }
        for size in self.gram_size_lower..=self.gram_size_upper {
            let grams = gram_vector(&key, size);
            let items = self.items.entry(size).or_default();
            let index = items.len();
            items.push(Item {
                magnitude: norm(grams.values()),
                key: key.clone(),
            });
            for (gram, count) in grams {
                self.match_dict
                    .entry(gram)
                    .or_default()
                    .push((index, count));
            }
        }
        self.exact.insert(key, value.to_string());
        true
    }

    /// How many distinct (case-insensitively) entries the set holds.
    pub fn len(&self) -> usize {
        self.exact.len()
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty()
    }

    /// Entries that match `value` with at least `min_score`, best first (`getWithMinScore`).
    pub fn get_with_min_score(&self, min_score: f64, value: &str) -> Vec<(f64, String)> {
        let key = lowercase(value);
        if let Some(entry) = self.exact.get(&key) {
            return vec![(1.0, entry.clone())];
        }
        (self.gram_size_lower..=self.gram_size_upper)
            .rev()
            .map(|size| self.get_matches(&key, min_score, size))
            .find(|found| !found.is_empty())
            .unwrap_or_default()
    }

    /// [`get_with_min_score`](Self::get_with_min_score) at the library's default 0.33 (`get`).
    pub fn get(&self, value: &str) -> Vec<(f64, String)> {
        self.get_with_min_score(DEFAULT_MIN_SCORE, value)
    }

    /// The best entry with at least `min_score`, if any (`getOneWithMinScore`).
    pub fn get_one_with_min_score(&self, min_score: f64, value: &str) -> Option<String> {
        self.get_with_min_score(min_score, value)
            .into_iter()
            .next()
            .map(|(_, entry)| entry)
    }

    /// The best entry with at least 0.33, if any (`getOne`).
    pub fn get_one(&self, value: &str) -> Option<String> {
        self.get_one_with_min_score(DEFAULT_MIN_SCORE, value)
    }

    /// The scored matches of the lowercased search `key` at one gram size (`getMatches`).
    fn get_matches(&self, key: &str, min_score: f64, size: usize) -> Vec<(f64, String)> {
        let query = gram_vector(key, size);
        let query_magnitude = norm(query.values());
        let Some(items) = self.items.get(&size) else {
            return Vec::new();
        };
        // The dot products, keyed by entry index (`matches`).
        let mut dots: HashMap<usize, usize> = HashMap::new();
        for (gram, count) in &query {
            for (index, other) in self.match_dict.get(gram).into_iter().flatten() {
                *dots.entry(*index).or_default() += other * count;
            }
        }
        let mut dots: Vec<(usize, usize)> = dots.into_iter().collect();
        dots.sort_by_key(|(index, _)| trie_order(*index));
        let mut scored: Vec<(f64, &str)> = dots
            .into_iter()
            .filter_map(|(index, dot)| {
                let item = items.get(index)?;
                Some((
                    dot as f64 / (query_magnitude * item.magnitude),
                    item.key.as_str(),
                ))
            })
            .collect();
        sort_best_first(&mut scored);
        if self.use_levenshtein {
            scored.truncate(LEVENSHTEIN_CANDIDATES);
            for (score, entry) in &mut scored {
                *score = distance(key, entry);
            }
            sort_best_first(&mut scored);
        }
        scored
            .into_iter()
            .filter(|(score, _)| *score >= min_score)
            .map(|(score, entry)| (score, self.exact.get(entry).cloned().unwrap_or_default()))
            .collect()
    }
}

/// Stable, highest score first (`sortBy (comparing (Down . fst))`); scores are never NaN.
fn sort_best_first(scored: &mut [(f64, &str)]) {
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
}

/// Where `index` comes in the iteration of a Haskell `HashMap Int`: a trie on the hash (the
/// `Int` itself) consumed 5 bits at a time from the lowest, children in ascending order.
fn trie_order(index: usize) -> u128 {
    let mut key = 0u128;
    for chunk in 0..13 {
        key = (key << 5) | ((index as u128 >> (5 * chunk)) & 31);
    }
    key
}

/// `Text.toLower`: each character's full lowercase mapping, without context rules.
fn lowercase(s: &str) -> String {
    s.chars().flat_map(char::to_lowercase).collect()
}

/// The library's `normalized`: lowercase, keeping letters, digits, white space and commas.
pub fn normalized(s: &str) -> String {
    lowercase(s)
        .chars()
        .filter(|c| c.is_alphanumeric() || is_space(*c) || *c == ',')
        .collect()
}

/// GHC's `isSpace`: in Latin-1 space, `\t`–`\r` and no-break space; above it the `Zs` category.
fn is_space(c: char) -> bool {
    match c as u32 {
        0x20 | 0x09..=0x0d | 0xa0 => true,
        0..=0x377 => false,
        0x1680 | 0x2000..=0x200a | 0x202f | 0x205f | 0x3000 => true,
        _ => false,
    }
}

/// The grams of size `size` of the normalized `value` enclosed in `-` (`grams`).
pub fn grams(value: &str, size: usize) -> Vec<String> {
    let chars: Vec<char> = std::iter::once('-')
        .chain(normalized(value).chars())
        .chain(std::iter::once('-'))
        .collect();
    chars.windows(size).map(|w| w.iter().collect()).collect()
}

/// Gram → how many times it occurs in `value` (`gramVector`).
pub fn gram_vector(value: &str, size: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for gram in grams(value, size) {
        *counts.entry(gram).or_default() += 1;
    }
    counts
}

/// The euclidean norm of a vector of counts (`norm`).
fn norm<'a>(counts: impl Iterator<Item = &'a usize>) -> f64 {
    (counts.map(|c| c * c).sum::<usize>() as f64).sqrt()
}

/// The normalized Levenshtein similarity of two texts, by characters: `1 - d / longer length`
/// (`text-metrics`' `levenshteinNorm`, 1 for two equal texts), rounded once from the exact ratio.
pub fn distance(s: &str, t: &str) -> f64 {
    let a: Vec<char> = s.chars().collect();
    let b: Vec<char> = t.chars().collect();
    let d = levenshtein(&a, &b);
    if d == 0 {
        return 1.0;
    }
    let longer = a.len().max(b.len());
    (longer - d) as f64 / longer as f64
}

fn levenshtein(a: &[char], b: &[char]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != cb);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
#[path = "fuzzy_tests.rs"]
mod tests;
