//! Prices tokens for providers that report no cost: `[harness.<name>.rates]` in `coord.toml`,
//! dollars per million tokens by model.
//!
//! Owns the lookup (exact model name, else the longest configured prefix, else `default`) and
//! the arithmetic. It must not guess prices it was not given.

use crate::config::leaf_settings::ModelRates;
use crate::scheduler::session::Usage;
use indexmap::IndexMap;

#[derive(Clone, Debug, Default)]
pub struct RateTable {
    by_model: IndexMap<String, ModelRates>,
}

impl RateTable {
    pub fn new(by_model: IndexMap<String, ModelRates>) -> Self {
        RateTable { by_model }
    }

    pub fn rates(&self, model: Option<&str>) -> Option<&ModelRates> {
        if let Some(model) = model {
            if let Some(r) = self.by_model.get(model) {
                return Some(r);
            }
            // A dated or suffixed name (claude-sonnet-4-5-20250929) prices like its family.
            let by_prefix = self
                .by_model
                .iter()
                .filter(|(name, _)| model.starts_with(name.as_str()))
                .max_by_key(|(name, _)| name.len())
                .map(|(_, r)| r);
            if by_prefix.is_some() {
                return by_prefix;
            }
        }
        self.by_model.get("default")
    }

    /// The cost of `usage` in dollars, or `None` when the table has no rate for `model`.
    pub fn cost(&self, model: Option<&str>, usage: &Usage) -> Option<f64> {
        let r = self.rates(model)?;
        let per_token = |rate: f64, tokens: u64| rate * tokens as f64 / 1_000_000.0;
        Some(
            per_token(r.input, usage.input_tokens)
                + per_token(r.output, usage.output_tokens)
                + per_token(r.cache_read.unwrap_or(r.input), usage.cache_read_tokens)
                + per_token(r.cache_write.unwrap_or(r.input), usage.cache_write_tokens),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RateTable {
        let mut m = IndexMap::new();
        m.insert(
            "gpt-5".to_owned(),
            ModelRates { input: 1.25, output: 10.0, cache_read: Some(0.125), cache_write: None },
        );
        m.insert("gpt-5-mini".to_owned(), ModelRates { input: 0.25, output: 2.0, cache_read: None, cache_write: None });
        RateTable::new(m)
    }

    #[test]
    fn prices_by_exact_name_then_longest_prefix() {
        let usage = Usage {
            input_tokens: 1_000_000,
            output_tokens: 100_000,
            cache_read_tokens: 2_000_000,
            ..Default::default()
        };
        let cost = table().cost(Some("gpt-5"), &usage).unwrap();
        assert!((cost - (1.25 + 1.0 + 0.25)).abs() < 1e-9, "{cost}");
        let cost = table().cost(Some("gpt-5-mini-2025-08-07"), &usage).unwrap();
        assert!((cost - (0.25 + 0.2 + 0.5)).abs() < 1e-9, "{cost}");
        assert_eq!(table().cost(Some("o3"), &usage), None);
        assert_eq!(table().cost(None, &usage), None);
    }

    #[test]
    fn default_rate_catches_the_rest() {
        let mut m = IndexMap::new();
        m.insert("default".to_owned(), ModelRates { input: 1.0, output: 1.0, ..Default::default() });
        let usage = Usage { input_tokens: 500_000, output_tokens: 500_000, ..Default::default() };
        assert_eq!(RateTable::new(m).cost(Some("anything"), &usage), Some(1.0));
    }
}
