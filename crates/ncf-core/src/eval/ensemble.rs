//! Several models scored as one: an [`Ensemble`] is a [`Scorer`] whose score is the weighted sum
//! of its members' logits (ncf-eval with several models), counting each member's NaN scores.

use crate::eval::nan::NanScores;
use crate::train::Scorer;
use crate::{Error, Result};

/// The weighted sum of the logits of its members, in member order: `out = Σ wₘ · scoreₘ`.
/// One member of weight 1 is passed through as it scores (the same bits as the model alone).
pub struct Ensemble<'a> {
    members: Vec<Box<dyn Scorer + 'a>>,
    weights: Vec<f32>,
    /// NaN scores of each member (those of the sum come from them).
    nans: Vec<NanScores>,
    /// One member's scores, before they are weighted into the sum.
    part: Vec<f32>,
}

impl<'a> Ensemble<'a> {
    /// `members` weighted by `weights` (one weight per member; checking their values is the
    /// caller's: ncf-eval refuses negative, non-finite and all-zero weights).
    pub fn new(members: Vec<Box<dyn Scorer + 'a>>, weights: Vec<f32>) -> Result<Self> {
        if members.len() != weights.len() || members.is_empty() {
            return Err(Error::invalid(format!(
                "an ensemble needs one weight per model: {} weights for {} models",
                weights.len(),
                members.len()
            )));
        }
        Ok(Ensemble {
            nans: vec![NanScores::default(); members.len()],
            members,
            weights,
            part: Vec::new(),
        })
    }

    /// The NaN scores each member gave so far, in member order.
    pub fn nan_scores(&self) -> &[NanScores] {
        &self.nans
    }
}

impl Scorer for Ensemble<'_> {
    fn score(&mut self, users: &[u32], items: &[u32], out: &mut [f32]) -> Result<()> {
        if let ([member], [w]) = (&mut self.members[..], &self.weights[..]) {
            if *w == 1.0 {
                member.score(users, items, out)?;
                self.nans[0].count(out);
                return Ok(());
            }
        }
        out.fill(0.0);
        self.part.resize(out.len(), 0.0);
        let members = self.members.iter_mut().zip(&self.weights);
        for ((member, &w), nan) in members.zip(&mut self.nans) {
            member.score(users, items, &mut self.part)?;
            nan.count(&self.part);
            for (x, p) in out.iter_mut().zip(&self.part) {
                *x += w * p;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model scoring (u, i) as `f(u, i)`.
    struct ByPair(fn(u32, u32) -> f32);

    impl Scorer for ByPair {
        fn score(&mut self, users: &[u32], items: &[u32], out: &mut [f32]) -> Result<()> {
            for ((o, &u), &i) in out.iter_mut().zip(users).zip(items) {
                *o = (self.0)(u, i);
            }
            Ok(())
        }
    }

    /// A model that fails.
    struct Broken;

    impl Scorer for Broken {
        fn score(&mut self, _: &[u32], _: &[u32], _: &mut [f32]) -> Result<()> {
            Err(Error::invalid("item 9 out of range"))
        }
    }

    fn score(e: &mut Ensemble, users: &[u32], items: &[u32]) -> Vec<f32> {
        let mut out = vec![7.0; users.len()];
        e.score(users, items, &mut out).unwrap();
        out
    }

    #[test]
    fn the_score_is_the_weighted_sum_of_the_members_logits_in_order() {
        let a = |u: u32, i: u32| 0.1 * u as f32 - 0.3 * i as f32;
        let b = |u: u32, i: u32| (u * i) as f32 / 7.0;
        let mut e = Ensemble::new(
            vec![Box::new(ByPair(a)), Box::new(ByPair(b))],
            vec![0.6, 0.4],
        )
        .unwrap();
        let (users, items) = ([0, 1, 2, 5], [3, 1, 4, 1]);
        let want: Vec<f32> = (users.iter().zip(&items))
            .map(|(&u, &i)| 0.0 + 0.6 * a(u, i) + 0.4 * b(u, i))
            .collect();
        assert_eq!(score(&mut e, &users, &items), want);
        // A shorter call after a longer one: the member buffer follows the call's length.
        assert_eq!(score(&mut e, &users[..2], &items[..2]), want[..2]);
        assert_eq!(e.nan_scores(), [NanScores(0), NanScores(0)]);
    }

    #[test]
    fn one_model_of_weight_one_is_passed_through_bit_for_bit() {
        let mut e = Ensemble::new(vec![Box::new(ByPair(|_, _| -0.0))], vec![1.0]).unwrap();
        let out = score(&mut e, &[0], &[0]);
        assert!(out[0] == 0.0 && out[0].is_sign_negative(), "{out:?}");
        // Another weight goes through the sum: 0 + 0.5·(-0) is +0.
        let mut e = Ensemble::new(vec![Box::new(ByPair(|_, _| -0.0))], vec![0.5]).unwrap();
        assert!(score(&mut e, &[0], &[0])[0].is_sign_positive());
    }

    #[test]
    fn nan_scores_are_counted_per_member() {
        let nan_on_odd = |u: u32, _| if u % 2 == 1 { f32::NAN } else { 1.0 };
        let mut e = Ensemble::new(
            vec![Box::new(ByPair(|_, _| 2.0)), Box::new(ByPair(nan_on_odd))],
            vec![0.5, 0.5],
        )
        .unwrap();
        let out = score(&mut e, &[0, 1, 2, 3], &[0; 4]);
        assert_eq!((out[0], out[2]), (1.5, 1.5));
        assert!(out[1].is_nan() && out[3].is_nan());
        score(&mut e, &[1], &[0]);
        assert_eq!(e.nan_scores(), [NanScores(0), NanScores(3)]);
        let mut one = Ensemble::new(vec![Box::new(ByPair(nan_on_odd))], vec![1.0]).unwrap();
        score(&mut one, &[1, 2, 3], &[0; 3]);
        assert_eq!(one.nan_scores(), [NanScores(2)]);
    }

    #[test]
    fn a_member_error_is_the_ensembles_and_weights_must_match_the_members() {
        let mut e = Ensemble::new(
            vec![Box::new(ByPair(|_, _| 1.0)), Box::new(Broken)],
            vec![0.5, 0.5],
        )
        .unwrap();
        let err = e.score(&[0], &[9], &mut [0.0]).unwrap_err();
        assert!(err.to_string().contains("item 9 out of range"), "{err}");
        let err = Ensemble::new(vec![Box::new(Broken)], vec![0.5, 0.5])
            .err()
            .unwrap();
        assert!(err.to_string().contains("2 weights for 1 models"), "{err}");
        assert!(Ensemble::new(vec![], vec![]).is_err());
    }
}
