//! Which files to leave out after a COPY refused bad data, so the outcome never depends on how
//! files happened to be batched together.
//!
//! Redshift fails a COPY when its errors pass `MAXERROR` across all files; the error rows name
//! the files. A file with more errors than `MAXERROR` would fail on its own too, so every such
//! file is left out at once. Otherwise no single file is hopeless, and only the file with the
//! most errors is left out before the next try: a file with one bad field batched beside a
//! file with ten still loads (its bad row recorded), exactly as it would alone.

use crate::model::LoadError;
use std::collections::BTreeMap;

/// The objects to leave out, given the failed COPY's rows (their `object_id` resolved) and the
/// COPY's `MAXERROR`. Empty when the rows name no object of the batch.
pub fn choose(rows: &[LoadError], max_error: u64) -> Vec<i64> {
    let mut counts: BTreeMap<i64, u64> = BTreeMap::new();
    for id in rows.iter().filter_map(|r| r.object_id) {
        *counts.entry(id).or_default() += 1;
    }
    let hopeless: Vec<i64> = counts
        .iter()
        .filter(|(_, n)| **n > max_error)
        .map(|(id, _)| *id)
        .collect();
    if !hopeless.is_empty() {
        return hopeless;
    }
    // The most errors first; among equals the first object (lowest id), so a retry of the
    // same batch makes the same choice.
    counts
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        .map(|(id, _)| vec![*id])
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(ids: &[Option<i64>]) -> Vec<LoadError> {
        ids.iter()
            .map(|id| LoadError {
                object_id: *id,
                ..LoadError::default()
            })
            .collect()
    }

    #[test]
    fn without_maxerror_every_named_file_goes() {
        assert_eq!(choose(&rows(&[Some(3), Some(1), Some(3)]), 0), vec![1, 3]);
    }

    #[test]
    fn with_maxerror_a_file_over_the_limit_goes_and_one_under_it_stays() {
        // MAXERROR 3: file 1 has one bad row, file 2 has at least four (the COPY stopped there).
        let r = rows(&[Some(1), Some(2), Some(2), Some(2), Some(2)]);
        assert_eq!(choose(&r, 3), vec![2]);
    }

    #[test]
    fn when_no_file_is_hopeless_the_worst_goes_first() {
        // MAXERROR 3: 2 + 2 errors fail together, but each file alone would pass.
        let r = rows(&[Some(5), Some(5), Some(4), Some(4)]);
        assert_eq!(choose(&r, 3), vec![4]);
        let r = rows(&[Some(5), Some(5), Some(5), Some(4)]);
        assert_eq!(choose(&r, 3), vec![5]);
    }

    #[test]
    fn rows_of_other_files_name_nothing() {
        assert!(choose(&rows(&[None, None]), 0).is_empty());
        assert!(choose(&[], 0).is_empty());
    }
}
