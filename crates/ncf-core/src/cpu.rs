//! TODO: being written (CPU backend).
use crate::model::Model;

/// Scores (logits) of (user, item) pairs with dropout off: `out[k] = NeuMF(users[k], items[k])`.
pub fn score(model: &Model, users: &[u32], items: &[u32], out: &mut [f32]) {
    let _ = (model, users, items, out);
    unimplemented!("cpu::score is being written")
}
