//! "Did you mean …?": the closest of a set of names to a misspelt one, for every error
//! that names an unknown key, scenario, runtime or option.

/// The candidate closest to `word` by edit distance, if it is close.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min()
        .map(|(_, c)| c)
}

/// A hint for serde's "unknown field `x`, expected one of `a`, `b`" message.
pub fn unknown_field_hint(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    closest(field, &expected).map(|c| format!("did you mean `{c}`?"))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_only_close_names() {
        assert_eq!(closest("numjob", &["numjobs", "bs"]), Some("numjobs"));
        assert_eq!(closest("zzz", &["numjobs", "bs"]), None);
        assert_eq!(
            unknown_field_hint("unknown field `shar`, expected one of `share`, `vcpus`").as_deref(),
            Some("did you mean `share`?")
        );
    }
}
