//! String helpers. Positions and lengths count characters, not bytes, so text in any
//! script is cut where a reader expects. Regular expressions are the `regex` crate's
//! (JavaScript-like syntax without look-around), compiled once per pattern and flags.

use super::{text_of, Args, Compiled};
use serde_json::Value;
use std::sync::Arc;

static PATTERNS: Compiled<regex::Regex> = Compiled::new();

/// `pattern` with JavaScript-style `flags` (`i`, `m`, `s`; `g` is implied: every helper
/// here looks at every match).
fn pattern(pattern: &str, flags: Option<String>) -> Result<Arc<regex::Regex>, String> {
    let flags = flags.unwrap_or_default();
    let key = format!("{flags}/{pattern}");
    PATTERNS.get(&key, || {
        let mut b = regex::RegexBuilder::new(pattern);
        for f in flags.chars() {
            match f {
                'i' => b.case_insensitive(true),
                'm' => b.multi_line(true),
                's' => b.dot_matches_new_line(true),
                'g' | 'u' => &mut b,
                other => return Err(format!("unknown flag '{other}' (use i, m, s, g)")),
            };
        }
        b.build()
            .map_err(|e| format!("invalid regular expression: {e}"))
    })
}

fn text(s: String) -> Result<Value, String> {
    Ok(Value::String(s))
}

/// `{{replace s find replacement}}`: every occurrence.
pub fn replace(a: &Args) -> Result<Value, String> {
    let find = a.text(1);
    if find.is_empty() {
        return text(a.text(0));
    }
    text(a.text(0).replace(&find, &a.text(2)))
}

/// `{{split s delimiter [index]}}`: the part at `index` (default 0; negative counts from
/// the end), "" past the end.
pub fn split(a: &Args) -> Result<Value, String> {
    let s = a.text(0);
    let delimiter = a.text(1);
    let parts: Vec<&str> = if delimiter.is_empty() {
        vec![s.as_str()]
    } else {
        s.split(delimiter.as_str()).collect()
    };
    let i = a.count(2, 0)?;
    let i = if i < 0 { parts.len() as i64 + i } else { i };
    text(
        usize::try_from(i)
            .ok()
            .and_then(|i| parts.get(i))
            .unwrap_or(&"")
            .to_string(),
    )
}

/// `{{join delimiter a b ...}}`: lists are flattened, nulls left out.
pub fn join(a: &Args) -> Result<Value, String> {
    let mut parts = Vec::new();
    for v in &a.all()[1.min(a.len())..] {
        match v {
            Value::Array(items) => parts.extend(items.iter().filter(|v| !v.is_null()).map(text_of)),
            Value::Null => {}
            v => parts.push(text_of(v)),
        }
    }
    text(parts.join(&a.text(0)))
}

/// `{{substring s start [end]}}`: characters from `start` (inclusive) to `end` (exclusive).
pub fn substring(a: &Args) -> Result<Value, String> {
    let chars: Vec<char> = a.text(0).chars().collect();
    let start = a.count(1, 0)?.clamp(0, chars.len() as i64) as usize;
    let end = a
        .count(2, chars.len() as i64)?
        .clamp(start as i64, chars.len() as i64) as usize;
    text(chars[start..end].iter().collect())
}

pub fn trim(a: &Args) -> Result<Value, String> {
    text(a.text(0).trim().to_string())
}
pub fn trim_left(a: &Args) -> Result<Value, String> {
    text(a.text(0).trim_start().to_string())
}
pub fn trim_right(a: &Args) -> Result<Value, String> {
    text(a.text(0).trim_end().to_string())
}

fn pad(a: &Args, left: bool) -> Result<Value, String> {
    let s = a.text(0);
    let width = a.count(1, 0)?.max(0) as usize;
    let fill = a.opt_text(2).unwrap_or_else(|| " ".into());
    let have = s.chars().count();
    if have >= width {
        return text(s);
    }
    let padding: String = fill.chars().cycle().take(width - have).collect();
    text(if left { padding + &s } else { s + &padding })
}
/// `{{padLeft s length [char]}}`
pub fn pad_left(a: &Args) -> Result<Value, String> {
    pad(a, true)
}
/// `{{padRight s length [char]}}`
pub fn pad_right(a: &Args) -> Result<Value, String> {
    pad(a, false)
}

fn upper_first(word: &str) -> String {
    let mut c = word.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}
/// `{{capitalize s}}`: the first letter.
pub fn capitalize(a: &Args) -> Result<Value, String> {
    text(upper_first(&a.text(0)))
}
/// `{{capitalizeAll s}}`: the first letter of every word.
pub fn capitalize_all(a: &Args) -> Result<Value, String> {
    let s = a.text(0);
    text(s.split(' ').map(upper_first).collect::<Vec<_>>().join(" "))
}

/// `{{truncate s length [suffix]}}`: at most `length` characters, then `suffix` if cut.
pub fn truncate(a: &Args) -> Result<Value, String> {
    let s = a.text(0);
    let n = a.count(1, 0)?.max(0) as usize;
    if s.chars().count() <= n {
        return text(s);
    }
    text(s.chars().take(n).collect::<String>() + &a.text(2))
}

/// `{{truncateWords s count [suffix]}}`: the first `count` words, then `suffix` (default
/// `…`) if cut.
pub fn truncate_words(a: &Args) -> Result<Value, String> {
    let s = a.text(0);
    let n = a.count(1, 0)?.max(0) as usize;
    let words: Vec<&str> = s.split_whitespace().collect();
    if words.len() <= n {
        return text(s);
    }
    let suffix = a.opt_text(2).unwrap_or_else(|| "…".into());
    text(words[..n].join(" ") + &suffix)
}

/// `{{regexMatch s pattern [index] [flags]}}`: the `index`-th match (default the first),
/// "" when there is none.
pub fn regex_match(a: &Args) -> Result<Value, String> {
    let re = pattern(&a.text(1), a.opt_text(3))?;
    let s = a.text(0);
    let i = a.count(2, 0)?.max(0) as usize;
    let found = re.find_iter(&s).nth(i).map(|m| m.as_str().to_string());
    text(found.unwrap_or_default())
}

/// `{{regexReplace s replacement pattern [flags]}}`: every match replaced (`$1` for groups).
pub fn regex_replace(a: &Args) -> Result<Value, String> {
    let re = pattern(&a.text(2), a.opt_text(3))?;
    text(re.replace_all(&a.text(0), a.text(1).as_str()).into_owned())
}

/// `{{regexSearch s pattern [flags]}}`: where the first match starts (in characters), or -1.
pub fn regex_search(a: &Args) -> Result<Value, String> {
    let re = pattern(&a.text(1), a.opt_text(2))?;
    let s = a.text(0);
    Ok(Value::from(match re.find(&s) {
        Some(m) => s[..m.start()].chars().count() as i64,
        None => -1,
    }))
}
