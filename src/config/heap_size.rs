//! Sizes of the script's heap budget as people write them: `2GiB`, `512MiB`, `1.5GiB`, or a
//! bare number of bytes. Read from `--max-heap` and from `coord.toml`'s `[run] max_heap`.
//!
//! It only parses; what the budget limits is the script engine's business.

use serde::Deserialize;

/// Binary units only: a budget is a count of bytes the allocator hands out.
const UNITS: [(&str, u64); 5] = [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10), ("B", 1)];

/// Why a heap size does not read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not a heap size: write a number with a unit, like \"2GiB\" or \"512MiB\"")]
pub struct HeapSizeError(String);

/// `text` as a number of bytes; at least one.
pub fn parse_heap_size(text: &str) -> Result<usize, HeapSizeError> {
    let refuse = || HeapSizeError(text.to_owned());
    let trimmed = text.trim();
    let (number, unit) = UNITS
        .iter()
        .find_map(|(name, size)| trimmed.strip_suffix(name).map(|n| (n.trim(), *size)))
        .unwrap_or((trimmed, 1));
    let bytes = match number.parse::<u64>() {
        Ok(n) => n.checked_mul(unit),
        Err(_) => number.parse::<f64>().ok().filter(|n| n.is_finite() && *n > 0.0).map(|n| (n * unit as f64) as u64),
    };
    bytes.filter(|b| *b > 0).and_then(|b| usize::try_from(b).ok()).ok_or_else(refuse)
}

/// `[run]` in `coord.toml`: settings of every run of the project (its heap budget, where its
/// report is published).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSettings {
    /// The script's heap budget (`--max-heap` wins over it).
    #[serde(default, deserialize_with = "heap_size_option")]
    pub max_heap: Option<usize>,
    /// Where a run's report is published, `{run}` standing for the run's id (e.g.
    /// `https://ci.example.com/coord/{run}.html`): what `run_info().url` answers.
    #[serde(default)]
    pub url: Option<String>,
}

fn heap_size_option<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    let text = String::deserialize(d)?;
    parse_heap_size(&text).map(Some).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(parse_heap_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_heap_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_heap_size(" 1.5 GiB "), Ok(3 << 29));
        assert_eq!(parse_heap_size("4096"), Ok(4096));
        assert_eq!(parse_heap_size("64KiB"), Ok(64 << 10));
        for bad in ["", "0", "0MiB", "-1GiB", "2GB", "lots", "1e999GiB", "NaNMiB"] {
            assert!(parse_heap_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_run_section_reads_its_budget() {
        let run: RunSettings = toml::from_str("max_heap = \"3GiB\"").unwrap();
        assert_eq!(run.max_heap, Some(3 << 30));
        assert!(toml::from_str::<RunSettings>("max_heap = \"3 apples\"").is_err());
        assert!(toml::from_str::<RunSettings>("other = 1").is_err());
    }
}
