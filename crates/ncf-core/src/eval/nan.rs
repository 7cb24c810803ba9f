//! NaN scores and models with non-finite parameters, counted and worded one way for every tool
//! that scores (ncf-eval, ncf-topk, each model of an ensemble): a note on stderr, never a silent
//! number. The loader checks checksums, not values, so a file whose floats are NaN loads.

use crate::model::Model;

/// The note for a model (`name`: its path) with NaN or infinite parameters, or `None` when
/// every parameter is finite: how many, and the first tensor that holds one.
pub fn non_finite_note(model: &Model, name: &str) -> Option<String> {
    let mut first = None;
    let mut count = 0u64;
    for t in &model.layout.tensors {
        let bad = model.params[t.range()]
            .iter()
            .filter(|x| !x.is_finite())
            .count() as u64;
        if bad > 0 && first.is_none() {
            first = Some(t.name.as_str());
        }
        count += bad;
    }
    let tensor = first?;
    Some(format!(
        "{name}: {count} of its {} parameters are NaN or infinite (the first in {tensor}), so it \
         scores pairs NaN; a training run that diverged, or a file edited since ncf-train wrote it",
        model.layout.n_params()
    ))
}

/// What a NaN score does in ncf-topk: the item is not recommended.
pub const NAN_NOT_LISTED: &str = "those items are not listed";
/// What a NaN score does in ncf-eval (ties and NaNs count against the held-out item).
pub const NAN_COUNTS_AGAINST: &str = "a NaN held-out item ranks below every candidate and a NaN \
     candidate above the held-out item, so they count as misses";

/// NaN scores met so far by one scorer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NanScores(pub u64);

impl NanScores {
    /// Count the NaNs of `scores`.
    pub fn count(&mut self, scores: &[f32]) {
        self.0 += scores.iter().filter(|x| x.is_nan()).count() as u64;
    }

    /// The note on them (`who`: "the model", a model's path; `effect`: what they did), or
    /// `None` when there were none.
    pub fn note(&self, who: &str, effect: &str) -> Option<String> {
        (self.0 > 0).then(|| format!("{who} scored {} (user, item) pairs NaN; {effect}", self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ModelConfig, ModelKind};

    #[test]
    fn non_finite_parameters_are_counted_and_the_first_tensor_named() {
        let config = ModelConfig {
            kind: ModelKind::Gmf,
            n_users: 2,
            n_items: 3,
            factors: 4,
            layers: vec![],
            dropout: 0.0,
        };
        let mut m = Model::init(config, 1).unwrap();
        assert_eq!(non_finite_note(&m, "m.st"), None);
        m.tensor_mut("final.bias")[0] = f32::NAN;
        m.tensor_mut("mf_item_embed.weight")[5] = f32::INFINITY;
        let note = non_finite_note(&m, "m.st").unwrap();
        assert!(
            note.starts_with("m.st: 2 of its 25 parameters are NaN or infinite (the first in mf_item_embed.weight)"),
            "{note}"
        );
        let mut n = NanScores::default();
        n.count(&[0.0, f32::NAN, 1.0, f32::NAN]);
        assert_eq!(
            n.note("the model", NAN_NOT_LISTED).unwrap(),
            "the model scored 2 (user, item) pairs NaN; those items are not listed"
        );
        assert_eq!(NanScores::default().note("x", ""), None);
    }
}
