//! The NeuMF model family: configuration, the flat parameter layout shared by the CPU and CUDA
//! backends and the model file, and NVIDIA's initialisation.
//!
//! Tensor names and shapes are those of NVIDIA's PyTorch `NeuMF.state_dict()` (row-major,
//! `mlp.k.weight` is `[out, in]`). All parameters live in one `Vec<f32>`; each tensor starts at a
//! 16-float aligned offset so one fused Adam and one device buffer cover everything.

use crate::sampling::rng::{stream, Rng};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// GMF + MLP towers joined by the final layer (the default, NVIDIA's model).
    Neumf,
    /// Generalized matrix factorisation alone.
    Gmf,
    /// The MLP tower alone.
    Mlp,
}

impl ModelKind {
    pub fn has_gmf(self) -> bool {
        matches!(self, ModelKind::Neumf | ModelKind::Gmf)
    }
    pub fn has_mlp(self) -> bool {
        matches!(self, ModelKind::Neumf | ModelKind::Mlp)
    }
}

/// The two sides of a recommender: its user rows and its item rows (embedding tables, the
/// first layer's factored products, a neighbourhood model's weights).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    User,
    Item,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub kind: ModelKind,
    pub n_users: u32,
    pub n_items: u32,
    /// GMF embedding width ("predictive factors").
    pub factors: usize,
    /// MLP widths, input first: `[256, 256, 128, 64]` means embeddings of 128 per side and three
    /// linear layers 256→256→128→64.
    pub layers: Vec<usize>,
    /// Dropout probability after each MLP ReLU (training only).
    pub dropout: f32,
}

impl ModelConfig {
    pub fn validate(&self) -> Result<()> {
        if self.n_users == 0 || self.n_items == 0 {
            return Err(Error::invalid("model needs at least one user and one item"));
        }
        if self.kind.has_gmf() && self.factors == 0 {
            return Err(Error::usage("--factors must be at least 1"));
        }
        if self.kind.has_mlp() {
            if self.layers.len() < 2 {
                return Err(Error::usage(
                    "--layers needs at least two widths (input and one layer)",
                ));
            }
            if !self.layers[0].is_multiple_of(2) || self.layers.contains(&0) {
                return Err(Error::usage(
                    "--layers: the first width must be even and none zero",
                ));
            }
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::usage("--dropout must be in [0, 1)"));
        }
        Ok(())
    }

    /// Width of each MLP embedding (half the first layer).
    pub fn mlp_embed(&self) -> usize {
        if self.kind.has_mlp() {
            self.layers[0] / 2
        } else {
            0
        }
    }

    pub fn gmf_factors(&self) -> usize {
        if self.kind.has_gmf() {
            self.factors
        } else {
            0
        }
    }

    /// Output width of the MLP tower (0 without one).
    pub fn mlp_out(&self) -> usize {
        if self.kind.has_mlp() {
            *self.layers.last().unwrap()
        } else {
            0
        }
    }

    /// Number of linear layers of the MLP tower.
    pub fn n_linear(&self) -> usize {
        if self.kind.has_mlp() {
            self.layers.len() - 1
        } else {
            0
        }
    }

    /// Width of the final layer's input: [GMF ‖ MLP].
    pub fn final_in(&self) -> usize {
        self.gmf_factors() + self.mlp_out()
    }

    /// Length of the flat parameter vector ([`Layout::total`], alignment padding included),
    /// computed with overflow checks and without building the layout (`None`: it overflows).
    /// For a config that passed [`ModelConfig::validate`].
    pub fn checked_total(&self) -> Option<u64> {
        let (u, i) = (self.n_users as u64, self.n_items as u64);
        let align = ALIGN as u64;
        let mut total = 0u64;
        let mut push = |rows: u64, cols: u64| -> Option<()> {
            let len = rows.checked_mul(cols)?;
            total = total
                .checked_next_multiple_of(align)?
                .checked_add(len)?
                .checked_next_multiple_of(align)?;
            Some(())
        };
        let f = self.gmf_factors() as u64;
        if self.kind.has_gmf() {
            push(u, f)?;
            push(i, f)?;
        }
        if self.kind.has_mlp() {
            let e = self.mlp_embed() as u64;
            push(u, e)?;
            push(i, e)?;
            for w in self.layers.windows(2) {
                push(w[1] as u64, w[0] as u64)?;
                push(w[1] as u64, 1)?;
            }
        }
        push(1, f.checked_add(self.mlp_out() as u64)?)?;
        push(1, 1)?;
        Some(total)
    }

    /// `--factors 8 --layers 16,8` (the flags of the shape this config's kind has).
    pub fn shape_flags(&self) -> String {
        let layers = || {
            let l: Vec<String> = self.layers.iter().map(usize::to_string).collect();
            format!("--layers {}", l.join(","))
        };
        match self.kind {
            ModelKind::Neumf => format!("--factors {} {}", self.factors, layers()),
            ModelKind::Gmf => format!("--factors {}", self.factors),
            ModelKind::Mlp => layers(),
        }
    }

    /// [`ModelConfig::checked_total`] as a `usize`, or the error naming the shape that overflows.
    pub fn checked_floats(&self) -> Result<usize> {
        self.checked_total()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| {
                Error::usage(format!(
                    "{} for {} users × {} items: the model's size overflows 64 bits; give smaller \
                     widths",
                    self.shape_flags(),
                    self.n_users,
                    self.n_items
                ))
            })
    }

    pub fn layout(&self) -> Layout {
        let mut l = Layout::default();
        let (u, i) = (self.n_users as usize, self.n_items as usize);
        if self.kind.has_gmf() {
            l.push("mf_user_embed.weight", vec![u, self.factors]);
            l.push("mf_item_embed.weight", vec![i, self.factors]);
        }
        if self.kind.has_mlp() {
            l.push("mlp_user_embed.weight", vec![u, self.mlp_embed()]);
            l.push("mlp_item_embed.weight", vec![i, self.mlp_embed()]);
            for k in 0..self.n_linear() {
                l.push(
                    &format!("mlp.{k}.weight"),
                    vec![self.layers[k + 1], self.layers[k]],
                );
                l.push(&format!("mlp.{k}.bias"), vec![self.layers[k + 1]]);
            }
        }
        l.push("final.weight", vec![1, self.final_in()]);
        l.push("final.bias", vec![1]);
        l
    }

    /// Multiply-adds of one forward pass of one sample through the MLP and final layer.
    pub fn macs_per_sample(&self) -> u64 {
        let mut m = self.final_in() as u64 + self.gmf_factors() as u64;
        for k in 0..self.n_linear() {
            m += (self.layers[k] * self.layers[k + 1]) as u64;
        }
        m
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
    /// Offset in floats into the flat parameter vector (a multiple of [`ALIGN`]).
    pub offset: usize,
}

impl TensorSpec {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len()
    }
}

/// Alignment of every tensor in the flat vector, in floats (64 bytes).
pub const ALIGN: usize = 16;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    pub tensors: Vec<TensorSpec>,
    /// Length of the flat vector, padding included.
    pub total: usize,
}

impl Layout {
    fn push(&mut self, name: &str, shape: Vec<usize>) {
        let offset = self.total.next_multiple_of(ALIGN);
        let t = TensorSpec {
            name: name.to_string(),
            shape,
            offset,
        };
        self.total = (offset + t.len()).next_multiple_of(ALIGN);
        self.tensors.push(t);
    }

    pub fn get(&self, name: &str) -> Option<&TensorSpec> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The tensor's range in the flat vector; panics on a name the layout lacks (a bug).
    pub fn range(&self, name: &str) -> std::ops::Range<usize> {
        self.get(name)
            .unwrap_or_else(|| panic!("layout has no tensor {name}"))
            .range()
    }

    /// Number of real parameters (padding excluded).
    pub fn n_params(&self) -> usize {
        self.tensors.iter().map(|t| t.len()).sum()
    }
}

/// A model: its configuration and its parameters in the flat layout.
#[derive(Clone, Debug)]
pub struct Model {
    pub config: ModelConfig,
    pub layout: Layout,
    pub params: Vec<f32>,
}

impl Model {
    /// NVIDIA's initialisation: embeddings N(0, 0.01); MLP weights Glorot-uniform; final weight
    /// LeCun-uniform; biases PyTorch's default U(±1/sqrt(fan_in)). Deterministic in `seed`.
    pub fn init(config: ModelConfig, seed: u64) -> Result<Model> {
        config.validate()?;
        // The families check the memory first (`family::require_model_memory`).
        config.checked_floats()?;
        let layout = config.layout();
        let mut params = vec![0f32; layout.total];
        let rng = Rng::new(seed);
        for (t_index, t) in layout.tensors.iter().enumerate() {
            let dst = &mut params[t.range()];
            let fan_in = *t.shape.last().unwrap() as f64;
            let fan_out = t.shape[0] as f64;
            let name = t.name.as_str();
            let uniform = |bound: f64, dst: &mut [f32]| {
                for (e, x) in dst.iter_mut().enumerate() {
                    let r =
                        rng.uniform_f64(stream::INIT, e as u32, t_index as u32, (e >> 32) as u32);
                    *x = ((2.0 * r - 1.0) * bound) as f32;
                }
            };
            if name.ends_with("_embed.weight") {
                for (e, x) in dst.iter_mut().enumerate() {
                    *x = (0.01
                        * rng.normal(stream::INIT, e as u32, t_index as u32, (e >> 32) as u32))
                        as f32;
                }
            } else if name == "final.weight" {
                uniform((3.0 / fan_in).sqrt(), dst);
            } else if name.starts_with("mlp.") && name.ends_with(".weight") {
                uniform((6.0 / (fan_in + fan_out)).sqrt(), dst);
            } else {
                // biases: fan_in of the layer they belong to
                let w = layout
                    .get(&name.replace(".bias", ".weight"))
                    .expect("bias without weight");
                uniform(1.0 / (w.shape[1] as f64).sqrt(), dst);
            }
        }
        Ok(Model {
            config,
            layout,
            params,
        })
    }

    pub fn tensor(&self, name: &str) -> &[f32] {
        &self.params[self.layout.range(name)]
    }

    pub fn tensor_mut(&mut self, name: &str) -> &mut [f32] {
        let r = self.layout.range(name);
        &mut self.params[r]
    }

    /// True when every parameter is finite.
    pub fn is_finite(&self) -> bool {
        self.params.iter().all(|x| x.is_finite())
    }

    /// NeuMF initialised from a trained GMF and a trained MLP, as the NCF paper pre-trains
    /// (He et al. 2017, §3.4.1): embeddings and MLP layers are copied, and the final layer is
    /// `[α·h_GMF ‖ (1−α)·h_MLP]` with bias `α·b_GMF + (1−α)·b_MLP`, so that with dropout off
    /// `logit_NeuMF = α·logit_GMF + (1−α)·logit_MLP` for every pair. `dropout` is the new
    /// model's (the towers' own dropout does not carry over).
    pub fn neumf_from_pretrained(
        gmf: &Model,
        mlp: &Model,
        alpha: f32,
        dropout: f32,
    ) -> Result<Model> {
        let (g, m) = (&gmf.config, &mlp.config);
        if g.kind != ModelKind::Gmf || m.kind != ModelKind::Mlp {
            return Err(Error::invalid(format!(
                "pre-training needs a GMF and an MLP model, got {:?} and {:?}",
                g.kind, m.kind
            )));
        }
        if (g.n_users, g.n_items) != (m.n_users, m.n_items) {
            return Err(Error::invalid(format!(
                "the GMF model has {} users × {} items, the MLP model {} × {}: not the same dataset",
                g.n_users, g.n_items, m.n_users, m.n_items
            )));
        }
        if !(0.0..=1.0).contains(&alpha) {
            return Err(Error::usage("--alpha must be in [0, 1]"));
        }
        let config = ModelConfig {
            kind: ModelKind::Neumf,
            n_users: g.n_users,
            n_items: g.n_items,
            factors: g.factors,
            layers: m.layers.clone(),
            dropout,
        };
        config.validate()?;
        let layout = config.layout();
        let mut out = Model {
            params: vec![0.0; layout.total],
            layout,
            config,
        };
        for name in ["mf_user_embed.weight", "mf_item_embed.weight"] {
            out.tensor_mut(name).copy_from_slice(gmf.tensor(name));
        }
        let mut names = vec![
            "mlp_user_embed.weight".to_string(),
            "mlp_item_embed.weight".to_string(),
        ];
        for k in 0..m.n_linear() {
            names.push(format!("mlp.{k}.weight"));
            names.push(format!("mlp.{k}.bias"));
        }
        for name in &names {
            out.tensor_mut(name).copy_from_slice(mlp.tensor(name));
        }
        let f = g.factors;
        let fw = out.tensor_mut("final.weight");
        for (o, x) in fw[..f].iter_mut().zip(gmf.tensor("final.weight")) {
            *o = alpha * x;
        }
        for (o, x) in fw[f..].iter_mut().zip(mlp.tensor("final.weight")) {
            *o = (1.0 - alpha) * x;
        }
        out.tensor_mut("final.bias")[0] =
            alpha * gmf.tensor("final.bias")[0] + (1.0 - alpha) * mlp.tensor("final.bias")[0];
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn nvidia(n_users: u32, n_items: u32) -> ModelConfig {
        ModelConfig {
            kind: ModelKind::Neumf,
            n_users,
            n_items,
            factors: 64,
            layers: vec![256, 256, 128, 64],
            dropout: 0.5,
        }
    }

    #[test]
    fn layout_has_nvidia_names_and_shapes() {
        let l = nvidia(10, 20).layout();
        let names: Vec<_> = l
            .tensors
            .iter()
            .map(|t| (t.name.as_str(), t.shape.clone()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("mf_user_embed.weight", vec![10, 64]),
                ("mf_item_embed.weight", vec![20, 64]),
                ("mlp_user_embed.weight", vec![10, 128]),
                ("mlp_item_embed.weight", vec![20, 128]),
                ("mlp.0.weight", vec![256, 256]),
                ("mlp.0.bias", vec![256]),
                ("mlp.1.weight", vec![128, 256]),
                ("mlp.1.bias", vec![128]),
                ("mlp.2.weight", vec![64, 128]),
                ("mlp.2.bias", vec![64]),
                ("final.weight", vec![1, 128]),
                ("final.bias", vec![1]),
            ]
        );
        assert!(l.tensors.iter().all(|t| t.offset % ALIGN == 0));
    }

    #[test]
    fn the_checked_size_is_the_layout_and_overflow_is_an_error() {
        for kind in [ModelKind::Neumf, ModelKind::Gmf, ModelKind::Mlp] {
            let c = ModelConfig {
                kind,
                factors: 7,
                layers: vec![10, 6, 3],
                ..nvidia(13, 29)
            };
            assert_eq!(c.checked_total(), Some(c.layout().total as u64), "{kind:?}");
        }
        let huge = ModelConfig {
            factors: usize::MAX / 2,
            ..nvidia(610, 9724)
        };
        assert_eq!(huge.checked_total(), None);
        let e = Model::init(huge, 1).unwrap_err().to_string();
        assert!(e.contains("the model's size overflows"), "{e}");
        assert!(
            e.starts_with(&format!(
                "--factors {} --layers 256,256,128,64",
                usize::MAX / 2
            )),
            "{e}"
        );
    }

    #[test]
    fn pretrained_neumf_scores_alpha_gmf_plus_one_minus_alpha_mlp() {
        let base = |kind, seed| {
            Model::init(
                ModelConfig {
                    kind,
                    n_users: 6,
                    n_items: 9,
                    factors: 8,
                    layers: vec![16, 8, 4],
                    dropout: 0.0,
                },
                seed,
            )
            .unwrap()
        };
        let (mut gmf, mut mlp) = (base(ModelKind::Gmf, 1), base(ModelKind::Mlp, 2));
        // Non-zero biases, so the bias combination is checked too.
        gmf.tensor_mut("final.bias")[0] = 0.3;
        mlp.tensor_mut("final.bias")[0] = -0.7;
        let users: Vec<u32> = (0..54).map(|k| k % 6).collect();
        let items: Vec<u32> = (0..54).map(|k| (k / 6) % 9).collect();
        let score = |m: &Model| {
            let mut out = vec![0f32; users.len()];
            crate::neumf_cpu::score_with(m, &users, &items, &mut out, 1);
            out
        };
        let (sg, sm) = (score(&gmf), score(&mlp));
        for alpha in [0.5f32, 0.2, 1.0] {
            let neumf = Model::neumf_from_pretrained(&gmf, &mlp, alpha, 0.5).unwrap();
            assert_eq!(neumf.config.kind, ModelKind::Neumf);
            assert_eq!(neumf.config.dropout, 0.5);
            let sn = score(&neumf);
            for k in 0..users.len() {
                let want = alpha * sg[k] + (1.0 - alpha) * sm[k];
                assert!(
                    (sn[k] - want).abs() <= 1e-5 * (1.0 + want.abs()),
                    "alpha {alpha} pair {k}: {} vs {want}",
                    sn[k]
                );
            }
        }
        assert!(Model::neumf_from_pretrained(&mlp, &gmf, 0.5, 0.0).is_err());
        assert!(Model::neumf_from_pretrained(&gmf, &mlp, 1.5, 0.0).is_err());
        let other = Model::init(
            ModelConfig {
                n_users: 7,
                ..mlp.config.clone()
            },
            3,
        )
        .unwrap();
        let e = Model::neumf_from_pretrained(&gmf, &other, 0.5, 0.0).unwrap_err();
        assert!(e.to_string().contains("not the same dataset"), "{e}");
    }

    #[test]
    fn init_is_deterministic_and_scaled() {
        let a = Model::init(nvidia(50, 60), 1).unwrap();
        let b = Model::init(nvidia(50, 60), 1).unwrap();
        assert_eq!(a.params, b.params);
        let e = a.tensor("mf_user_embed.weight");
        let std = (e.iter().map(|x| x * x).sum::<f32>() / e.len() as f32).sqrt();
        assert!((std - 0.01).abs() < 0.001, "{std}");
        let bound = (6.0f32 / 512.0).sqrt();
        assert!(a.tensor("mlp.0.weight").iter().all(|x| x.abs() <= bound));
    }
}
