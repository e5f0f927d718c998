//! Prices tokens for providers that report no cost: `[harness.<name>.rates]` in `coord.toml`,
//! dollars per million tokens by model.
//!
//! Each kind of harness starts from the published list prices of the models its CLI or API
//! defaults to ([`RateTable::for_kind`]); `coord.toml` adds models and overrides prices.
//!
//! Owns the lookup (exact model name, else the longest configured prefix, else `default`) and
//! the arithmetic. It must not guess prices it was not given.

use crate::config::leaf_settings::ModelRates;
use crate::leaf::session::Usage;
use indexmap::IndexMap;

#[derive(Clone, Debug, Default)]
pub struct RateTable {
    by_model: IndexMap<String, ModelRates>,
}

/// List prices (dollars per million tokens: input, output, cached input read, cache write) of
/// the models each harness kind uses when a workflow names none, and their close relatives.
const LIST_PRICES: &[(&str, &str, f64, f64, f64, f64)] = &[
    ("claude-code", "claude-opus-4-5", 5.0, 25.0, 0.5, 6.25),
    ("claude-code", "claude-opus-4-1", 15.0, 75.0, 1.5, 18.75),
    ("claude-code", "claude-sonnet-4-5", 3.0, 15.0, 0.3, 3.75),
    ("claude-code", "claude-sonnet-4", 3.0, 15.0, 0.3, 3.75),
    ("claude-code", "claude-haiku-4-5", 1.0, 5.0, 0.1, 1.25),
    ("codex", "gpt-5.1-codex-mini", 0.25, 2.0, 0.025, 0.25),
    ("codex", "gpt-5.1-codex", 1.25, 10.0, 0.125, 1.25),
    ("codex", "gpt-5-codex", 1.25, 10.0, 0.125, 1.25),
    ("codex", "gpt-5.1", 1.25, 10.0, 0.125, 1.25),
    ("codex", "gpt-5-mini", 0.25, 2.0, 0.025, 0.25),
    ("codex", "gpt-5-nano", 0.05, 0.4, 0.005, 0.05),
    ("codex", "gpt-5", 1.25, 10.0, 0.125, 1.25),
    ("gemini", "gemini-3-pro-preview", 2.0, 12.0, 0.2, 2.0),
    ("gemini", "gemini-2.5-pro", 1.25, 10.0, 0.125, 1.25),
    ("gemini", "gemini-2.5-flash-lite", 0.1, 0.4, 0.01, 0.1),
    ("gemini", "gemini-2.5-flash", 0.3, 2.5, 0.03, 0.3),
];

impl RateTable {
    pub fn new(by_model: IndexMap<String, ModelRates>) -> Self {
        RateTable { by_model }
    }

    /// The list prices of `kind`'s models (the `anthropic` and `openai` API harnesses share
    /// Claude Code's and Codex's), with `configured` added on top.
    pub fn for_kind(kind: &str, configured: &IndexMap<String, ModelRates>) -> Self {
        let family = match kind {
            "anthropic" => "claude-code",
            "openai" => "codex",
            other => other,
        };
        let mut by_model: IndexMap<String, ModelRates> = LIST_PRICES
            .iter()
            .filter(|(k, ..)| *k == family)
            .map(|&(_, model, input, output, read, write)| {
                (model.to_owned(), ModelRates { input, output, cache_read: Some(read), cache_write: Some(write) })
            })
            .collect();
        for (model, rates) in configured {
            by_model.insert(model.clone(), *rates);
        }
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
    fn each_kind_knows_its_default_models_and_config_overrides_them() {
        let usage = Usage { input_tokens: 1_000_000, output_tokens: 1_000_000, ..Default::default() };
        let codex = RateTable::for_kind("codex", &IndexMap::new());
        assert_eq!(codex.cost(Some("gpt-5-codex"), &usage), Some(11.25));
        assert_eq!(codex.cost(Some("gpt-5.1-codex-max"), &usage), Some(11.25), "priced like its family");
        assert_eq!(codex.cost(Some("claude-sonnet-4-5"), &usage), None, "another provider's model");
        let gemini = RateTable::for_kind("gemini", &IndexMap::new());
        assert_eq!(gemini.cost(Some("gemini-2.5-flash-lite"), &usage), Some(0.5));
        let mut mine = IndexMap::new();
        mine.insert("gpt-5-codex".to_owned(), ModelRates { input: 1.0, output: 1.0, ..Default::default() });
        assert_eq!(RateTable::for_kind("openai", &mine).cost(Some("gpt-5-codex"), &usage), Some(2.0));
    }

    #[test]
    fn default_rate_catches_the_rest() {
        let mut m = IndexMap::new();
        m.insert("default".to_owned(), ModelRates { input: 1.0, output: 1.0, ..Default::default() });
        let usage = Usage { input_tokens: 500_000, output_tokens: 500_000, ..Default::default() };
        assert_eq!(RateTable::new(m).cost(Some("anything"), &usage), Some(1.0));
    }
}
