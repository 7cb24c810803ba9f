//! One typed definition per kernel of `kernels/`: its name, how it is launched (threads per
//! block, the most dynamic shared memory) and its parameters in the order of the C signature,
//! each pointer with the element type and the smallest number of elements the kernel touches,
//! as an expression of the scalar parameters (and `grid`, the blocks launched). Every device
//! launches a kernel from its struct ([`crate::device::DeviceExt::launch`]): the GPU checks the
//! geometry, the host device every pointer against the buffer it lies in, and CI checks each
//! definition against the C source and the compiled PTX (tests/cuda.rs).

use crate::device::{ActElem, KArg, Ptr};

/// The C type of a parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    U32,
    U64,
    I32,
    F32,
    /// A pointer to elements of `Elem` (`mutable`: the kernel writes through it).
    Ptr {
        elem: Elem,
        mutable: bool,
        null: Null,
    },
}

/// When a pointer parameter may be 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Null {
    Never,
    /// When its extent is 0 (e.g. the GMF tables of a model without GMF).
    WhenEmpty,
    /// Always (an optional input, e.g. Adam's overflow flag).
    Always,
}

/// What a pointer parameter points to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elem {
    U32,
    U64,
    I32,
    F32,
    F64,
    /// `act_t`: float, half or bfloat16 by the precision.
    Act,
}

impl Elem {
    /// Bytes of one element (`act` for [`Elem::Act`]).
    pub fn bytes(self, act: usize) -> usize {
        match self {
            Elem::U32 | Elem::I32 | Elem::F32 => 4,
            Elem::U64 | Elem::F64 => 8,
            Elem::Act => act,
        }
    }

    /// The C spelling (`act_t` for [`Elem::Act`]).
    pub fn c_name(self) -> &'static str {
        match self {
            Elem::U32 => "u32",
            Elem::U64 => "u64",
            Elem::I32 => "int",
            Elem::F32 => "float",
            Elem::F64 => "double",
            Elem::Act => "act_t",
        }
    }
}

impl Ty {
    /// The signature class the PTX shows: 'q' for 64-bit values and pointers, 'u' for 32-bit
    /// integers, 'f' for floats.
    pub fn class(self) -> char {
        match self {
            Ty::U64 | Ty::Ptr { .. } => 'q',
            Ty::U32 | Ty::I32 => 'u',
            Ty::F32 => 'f',
        }
    }

    /// The C spelling of a scalar (pointers: see [`Elem::c_name`]).
    pub fn c_name(self) -> &'static str {
        match self {
            Ty::U32 => "u32",
            Ty::U64 => "u64",
            Ty::I32 => "int",
            Ty::F32 => "float",
            Ty::Ptr { elem, .. } => elem.c_name(),
        }
    }
}

/// One parameter.
#[derive(Clone, Copy, Debug)]
pub struct Param {
    pub name: &'static str,
    pub ty: Ty,
}

/// A kernel: its C name, its launch geometry and its parameters.
#[derive(Debug)]
pub struct KernelDef {
    pub name: &'static str,
    pub block: u32,
    /// Most dynamic shared memory (bytes) a launch may ask for.
    pub max_smem: u32,
    pub params: &'static [Param],
}

impl KernelDef {
    /// The PTX signature classes of the parameters ("uuuuuuuq").
    pub fn classes(&self) -> String {
        self.params.iter().map(|p| p.ty.class()).collect()
    }
}

/// A kernel launch's arguments: one struct per kernel ([`kernel!`]).
pub trait Kernel {
    const DEF: &'static KernelDef;
    /// The arguments in parameter order.
    fn args(&self) -> Vec<KArg>;
    /// Per parameter: for a pointer, the elements the kernel may touch from it (None: not known
    /// from the arguments); None for scalars. `grid` is the number of blocks launched.
    fn extents(&self, grid: u32) -> Vec<Option<u64>>;
}

/// The [`Ty`] of a parameter kind.
macro_rules! param_ty {
    (scalar u32) => {
        Ty::U32
    };
    (scalar u64) => {
        Ty::U64
    };
    (scalar i32) => {
        Ty::I32
    };
    (scalar f32) => {
        Ty::F32
    };
    (ptr $t:ident $m:literal $n:ident) => {
        Ty::Ptr {
            elem: elem!($t),
            mutable: $m,
            null: Null::$n,
        }
    };
}

macro_rules! elem {
    (u32) => {
        Elem::U32
    };
    (u64) => {
        Elem::U64
    };
    (i32) => {
        Elem::I32
    };
    (f32) => {
        Elem::F32
    };
    (f64) => {
        Elem::F64
    };
    (Act) => {
        Elem::Act
    };
}

/// The Rust type a pointer field points to.
macro_rules! elem_type {
    (Act) => {
        ActElem
    };
    ($t:ident) => {
        $t
    };
}

/// Declares kernels. Each parameter is `name: TYPE` (a scalar u32/u64/i32/f32), or a pointer
/// `name: ro TYPE [EXTENT]` (read), `rw TYPE [EXTENT]` (written), `ro_or_null` / `rw_or_null`
/// (0 allowed when EXTENT is 0), `ro_opt` / `rw_opt` (0 always allowed), TYPE one of
/// u32/u64/i32/f32/f64/Act and EXTENT an expression of the scalar parameters and of the name
/// given after the geometry (the blocks launched, `grid`), or `?`.
macro_rules! kernel {
    ($(#[$doc:meta])* $Name:ident = $cname:literal, block $block:literal, smem $smem:expr,
     $grid:ident; { $($body:tt)* }) => {
        kernel!(@munch [$(#[$doc])* $Name $cname $block ($smem) $grid] [] $($body)*);
    };
    (@munch $h:tt [$($acc:tt)*] $f:ident : ro $t:ident [$($e:tt)*] $(, $($rest:tt)*)?) => {
        kernel!(@munch $h [$($acc)* ($f [Ptr<elem_type!($t)>] ptr $t false Never ($($e)*))] $($($rest)*)?);
    };
    (@munch $h:tt [$($acc:tt)*] $f:ident : rw $t:ident [$($e:tt)*] $(, $($rest:tt)*)?) => {
        kernel!(@munch $h [$($acc)* ($f [Ptr<elem_type!($t)>] ptr $t true Never ($($e)*))] $($($rest)*)?);
    };
    (@munch $h:tt [$($acc:tt)*] $f:ident : ro_or_null $t:ident [$($e:tt)*] $(, $($rest:tt)*)?) => {
        kernel!(@munch $h [$($acc)* ($f [Ptr<elem_type!($t)>] ptr $t false WhenEmpty ($($e)*))] $($($rest)*)?);
    };
    (@munch $h:tt [$($acc:tt)*] $f:ident : rw_or_null $t:ident [$($e:tt)*] $(, $($rest:tt)*)?) => {
        kernel!(@munch $h [$($acc)* ($f [Ptr<elem_type!($t)>] ptr $t true WhenEmpty ($($e)*))] $($($rest)*)?);
    };
    (@munch $h:tt [$($acc:tt)*] $f:ident : ro_opt $t:ident [$($e:tt)*] $(, $($rest:tt)*)?) => {
        kernel!(@munch $h [$($acc)* ($f [Ptr<elem_type!($t)>] ptr $t false Always ($($e)*))] $($($rest)*)?);
    };
    (@munch $h:tt [$($acc:tt)*] $f:ident : rw_opt $t:ident [$($e:tt)*] $(, $($rest:tt)*)?) => {
        kernel!(@munch $h [$($acc)* ($f [Ptr<elem_type!($t)>] ptr $t true Always ($($e)*))] $($($rest)*)?);
    };
    (@munch $h:tt [$($acc:tt)*] $f:ident : $t:ident $(, $($rest:tt)*)?) => {
        kernel!(@munch $h [$($acc)* ($f [$t] scalar $t)] $($($rest)*)?);
    };
    (@munch [$(#[$doc:meta])* $Name:ident $cname:literal $block:literal ($smem:expr) $grid:ident]
     [$(($f:ident [$($fty:tt)*] $($info:tt)*))*]) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug)]
        pub struct $Name {
            $(pub $f: $($fty)*,)*
        }

        impl Kernel for $Name {
            const DEF: &'static KernelDef = &KernelDef {
                name: $cname,
                block: $block,
                max_smem: $smem,
                params: &[$(kernel!(@param $f $($info)*)),*],
            };
            fn args(&self) -> Vec<KArg> {
                vec![$(kernel!(@arg self $f $($info)*)),*]
            }
            #[allow(unused_variables, unused_assignments, clippy::identity_op, clippy::erasing_op)]
            fn extents(&self, $grid: u32) -> Vec<Option<u64>> {
                let $grid = $grid as u64;
                $(kernel!(@bind self $f $($info)*);)*
                vec![$(kernel!(@extent $($info)*)),*]
            }
        }
    };
    (@param $f:ident scalar $t:ident) => {
        Param { name: stringify!($f), ty: param_ty!(scalar $t) }
    };
    (@param $f:ident ptr $t:ident $m:literal $n:ident $e:tt) => {
        Param { name: stringify!($f), ty: param_ty!(ptr $t $m $n) }
    };
    (@arg $s:ident $f:ident scalar $t:ident) => { KArg::from($s.$f) };
    (@arg $s:ident $f:ident ptr $t:ident $m:literal $n:ident $e:tt) => { KArg::U64($s.$f.addr()) };
    (@bind $s:ident $f:ident scalar $t:ident) => { let $f = $s.$f as u64; };
    (@bind $s:ident $f:ident ptr $t:ident $m:literal $n:ident $e:tt) => {};
    (@extent scalar $t:ident) => { None };
    (@extent ptr $t:ident $m:literal $n:ident (?)) => { None };
    (@extent ptr $t:ident $m:literal $n:ident ($($e:tt)*)) => { Some($($e)*) };
}

kernel! {
    /// Philox-4x32 blocks (k0, k1 key; stream, a0 + i, b, c counter) into `out` (the RNG check).
    PhiloxBlocks = "ncf_philox_blocks", block 256, smem 0, grid; {
        k0: u32, k1: u32, stream: u32, a0: u32, b: u32, c: u32, n: u32,
        out: rw u32 [4 * n],
    }
}

kernel! {
    /// `count` positions from `p0` of the epoch permutation (the permutation check).
    Permute = "ncf_permute", block 256, smem 0, grid; {
        n: u64, half_bits: u32, pk0: u32, pk1: u32, pk2: u32, pk3: u32, p0: u64, count: u32,
        out: rw u64 [count],
    }
}

kernel! {
    /// The samples at positions `p0 .. p0 + count` of the epoch: user, item, label and sample
    /// index; `err` counts exact-mode draws that found no negative.
    MakeBatch = "ncf_make_batch", block 256, smem 0, grid; {
        k0: u32, k1: u32, epoch: u32, n_items: u32, exact: i32, n_pos: u64,
        users: ro u32 [n_pos], items: ro u32 [n_pos], offsets: ro u64 [?], pos_items: ro u32 [?],
        n: u64, half_bits: u32, pk0: u32, pk1: u32, pk2: u32, pk3: u32, p0: u64, count: u32,
        out_users: rw u32 [count], out_items: rw u32 [count], out_labels: rw f32 [count],
        out_sample: rw u32 [count], err: rw u64 [1], step: ro_opt u32 [16],
    }
}

kernel! {
    /// The MLP input rows [batch, 2e]: the user's then the item's MLP embedding.
    Gather = "ncf_gather", block 256, smem 0, grid; {
        users: ro u32 [batch], items: ro u32 [batch], batch: u32, e: u32,
        emb_user: ro f32 [e], emb_item: ro f32 [e], x0: rw Act [batch * 2 * e],
    }
}

kernel! {
    /// The MLP input gradient [batch, 2e] added to the embedding gradients of its ids.
    Scatter = "ncf_scatter", block 256, smem 0, grid; {
        users: ro u32 [batch], items: ro u32 [batch], batch: u32, e: u32,
        dx0: ro f32 [batch * 2 * e], g_user: rw f32 [e], g_item: rw f32 [e],
    }
}

kernel! {
    /// a = dropout(relu(z + bias)) [batch, width], the mask from the Philox counter.
    BiasReluDropoutFwd = "ncf_bias_relu_dropout_fwd", block 256, smem 0, grid; {
        z: ro f32 [batch * width], bias: ro f32 [width], a: rw Act [batch * width],
        sample: ro u32 [batch], batch: u32, width: u32, layer: u32, epoch: u32, k0: u32,
        k1: u32, thr: u32, scale: f32, step: ro_opt u32 [16],
    }
}

kernel! {
    /// dz from da through dropout and ReLU; dbias += Σ dz (one float per unit of shared memory),
    /// or with `partials` the block's sums in row order (16 floats per thread of shared memory).
    BiasReluDropoutBwd = "ncf_bias_relu_dropout_bwd", block 256, smem 4 * 16 * 256, grid; {
        da: ro f32 [batch * width], a: ro Act [batch * width], dz: rw Act [batch * width],
        dbias: rw f32 [width], sample: ro u32 [batch], batch: u32, width: u32, layer: u32,
        epoch: u32, k0: u32, k1: u32, thr: u32, scale: f32, partials: rw_opt f32 [grid * width],
        step: ro_opt u32 [16],
    }
}

kernel! {
    /// out[j] += the blocks' partial sums of unit j, in block order (deterministic).
    SumBlocks = "ncf_sum_blocks", block 256, smem 0, grid; {
        partials: ro f32 [blocks * width], blocks: u32, width: u32, out: rw f32 [width],
    }
}

kernel! {
    /// partials[block * width + j] = Σ x[., j] over the block's rows in row order (the fused
    /// step's top-layer bias gradient).
    ColSums = "ncf_col_sums", block 256, smem 0, grid; {
        x: ro Act [batch * width], batch: u32, width: u32, partials: rw f32 [grid * width],
    }
}

kernel! {
    /// The final layer: logits, and when training the BCE loss and every gradient it feeds;
    /// with `partials` per-block sums and per-sample GMF rows instead of float atomics (8 warps
    /// of fin + 2 floats of shared memory).
    Final = "ncf_final", block 256, smem 8 * (512 + 2) * 4, grid; {
        users: ro u32 [batch], items: ro u32 [batch], labels: ro f32 [batch], batch: u32, f: u32,
        mf_user: ro_or_null f32 [f], mf_item: ro_or_null f32 [f],
        x_last: ro_or_null Act [batch * lout], lout: u32, fw: ro f32 [f + lout], fb: ro f32 [1],
        train: i32, gscale: f32, logits: rw f32 [batch],
        loss_sum: rw_or_null f64 [(train != 0) as u64],
        g_mf_user: rw_or_null f32 [f * (train != 0) as u64],
        g_mf_item: rw_or_null f32 [f * (train != 0) as u64],
        g_fw: rw_or_null f32 [(f + lout) * (train != 0) as u64],
        g_fb: rw_or_null f32 [(train != 0) as u64],
        dx_last: rw_opt f32 [batch * lout * (train != 0) as u64],
        partials: rw_opt f32 [grid * (f + lout + 2)], gu_rows: rw_opt f32 [batch * f],
        gi_rows: rw_opt f32 [batch * f], dz_last: rw_opt Act [batch * lout], mask_scale: f32,
    }
}

kernel! {
    /// The blocks' partial sums of ncf_final (final.weight, final.bias, the loss) added in block
    /// order (deterministic).
    FinalReduce = "ncf_final_reduce", block 256, smem 0, grid; {
        partials: ro f32 [blocks * (fin + 2)], blocks: u32, fin: u32, g_fw: rw f32 [fin],
        g_fb: rw f32 [1], loss_sum: rw f64 [1],
    }
}

kernel! {
    /// dst = src in the activation type (the low-precision weight copy).
    Cast = "ncf_cast", block 256, smem 0, grid; {
        src: ro f32 [n], dst: rw Act [n], n: u64,
    }
}

kernel! {
    /// *found = 1 when any of the n gradients is inf or NaN.
    CheckFinite = "ncf_check_finite", block 256, smem 0, grid; {
        g: ro f32 [n], n: u64, found: rw i32 [1],
    }
}

kernel! {
    /// One Adam (or SGD) update of the n flat parameters from their gradients, which it zeroes;
    /// nothing when *found_inf.
    Adam = "ncf_adam", block 256, smem 0, grid; {
        p: rw f32 [n], g: rw f32 [n], m: rw f32 [n], v: rw f32 [n], n: u64, lr: f32,
        beta1: f32, beta2: f32, eps: f32, l2: f32, step_size: f32, bc2_sqrt: f32,
        inv_scale: f32, found_inf: ro_opt i32 [1], sgd: i32,
    }
}

kernel! {
    /// slots[step's loss slot] = *loss (a queued step's loss; the slot from device memory).
    StashLoss = "ncf_stash_loss", block 256, smem 0, grid; {
        loss: ro f64 [1], slots: rw f64 [n_slots], n_slots: u32, step: ro u32 [16],
    }
}

kernel! {
    /// The fused step's Adam (or SGD): ncf_adam's element math over n4 float4 quads, several
    /// per thread, the per-step scalars (step_size, bc2_sqrt, inv_scale) read from `hyper`.
    AdamWide = "ncf_adam_wide", block 256, smem 0, grid; {
        p: rw f32 [4 * n4], g: rw f32 [4 * n4], m: rw f32 [4 * n4], v: rw f32 [4 * n4], n4: u64,
        lr: f32, beta1: f32, beta2: f32, eps: f32, l2: f32, hyper: ro f32 [3],
        found_inf: ro_opt i32 [1], sgd: i32,
    }
}

kernel! {
    /// The fused step's MLP layer forward: a = dropout(relu(x . w^T + bias)) [batch, fout], one
    /// tiled GEMM with its epilogue.
    LinearFwd = "ncf_linear_fwd", block 256, smem 0, grid; {
        x: ro Act [batch * fin], w: ro Act [fout * fin], bias: ro f32 [fout],
        a: rw Act [batch * fout], sample: ro u32 [batch], batch: u32, fin: u32, fout: u32,
        layer: u32, epoch: u32, k0: u32, k1: u32, thr: u32, scale: f32, step: ro_opt u32 [16],
    }
}

kernel! {
    /// The fused step's MLP backward through a layer: dz = (dzn . wn) * scale where a > 0
    /// [batch, width], and the bias gradient's per-row-block partial sums.
    LinearBwd = "ncf_linear_bwd", block 256, smem 0, grid; {
        dzn: ro Act [batch * fnext], wn: ro Act [fnext * width], a: ro Act [batch * width],
        dz: rw Act [batch * width], batch: u32, width: u32, fnext: u32, scale: f32,
        partials: rw f32 [grid / width.div_ceil(64).max(1) * width],
    }
}

kernel! {
    /// flags[ids[b]] = 1.
    Mark = "ncf_mark", block 256, smem 0, grid; {
        ids: ro u32 [n], n: u32, flags: rw u32 [?],
    }
}

kernel! {
    /// Slots of the flagged ids in id order, the list of them and their count (one block).
    Slots = "ncf_slots", block 1024, smem 0, grid; {
        flags: rw u32 [len], len: u32, slots: rw u32 [len], list: rw u32 [?], count: rw u32 [1],
    }
}

kernel! {
    /// keys[b] = slots[ids[b]], vals[b] = b.
    Keys = "ncf_keys", block 256, smem 0, grid; {
        ids: ro u32 [n], n: u32, slots: ro u32 [?], keys: rw u32 [n], vals: rw u32 [n],
    }
}

kernel! {
    /// Exclusive prefix sum of x[0..len) in place (one block).
    Scan = "ncf_scan", block 1024, smem 0, grid; {
        x: rw u32 [len], len: u32,
    }
}

kernel! {
    /// Radix pass, part 1: per tile (block) the count of each 8-bit digit at `shift`.
    RadixHist = "ncf_radix_hist", block 256, smem 0, grid; {
        keys: ro u32 [n], n: u32, shift: u32, hist: rw u32 [256 * grid],
    }
}

kernel! {
    /// Radix pass, part 2: stable scatter of (key, value) by digit.
    RadixScatter = "ncf_radix_scatter", block 256, smem 0, grid; {
        keys: ro u32 [n], vals: ro u32 [n], n: u32, shift: u32, hist: ro u32 [256 * grid],
        keys_out: rw u32 [n], vals_out: rw u32 [n],
    }
}

kernel! {
    /// starts[k] = first index of key k in the sorted keys.
    Segments = "ncf_segments", block 256, smem 0, grid; {
        sorted_keys: ro u32 [n], n: u32, count: ro u32 [1], starts: rw u32 [?],
    }
}

kernel! {
    /// The embedding rows of the distinct ids, in the activation type.
    GatherRows = "ncf_gather_rows", block 256, smem 0, grid; {
        list: ro u32 [cap], count: ro u32 [1], cap: u32, e: u32, table: ro f32 [e],
        out: rw Act [cap * e],
    }
}

kernel! {
    /// z[b] = proj_u[ku[b]] + proj_i[ki[b]] [n, width].
    FactoredZ = "ncf_factored_z", block 256, smem 0, grid; {
        ku: ro u32 [n], ki: ro u32 [n], n: u32, width: u32, pu: ro f32 [width],
        pi: ro f32 [width], z: rw f32 [n * width],
    }
}

kernel! {
    /// s[slot] = Σ dz of the slot's samples, in sample order.
    SegmentSum = "ncf_segment_sum", block 256, smem 0, grid; {
        dz: ro Act [width], width: u32, order: ro u32 [?], starts: ro u32 [?],
        count: ro u32 [1], cap: u32, s: rw Act [cap * width],
    }
}

kernel! {
    /// out[slot] = Σ of the slot's samples' FP32 rows (src[sample * stride ..], width units), in
    /// sample order (deterministic).
    SegmentSumRows = "ncf_segment_sum_rows", block 256, smem 0, grid; {
        src: ro f32 [width], stride: u32, width: u32, order: ro u32 [?], starts: ro u32 [?],
        count: ro u32 [1], cap: u32, out: rw f32 [cap * width],
    }
}

kernel! {
    /// g[list[k]] += rows[k] for the distinct ids.
    ScatterRows = "ncf_scatter_rows", block 256, smem 0, grid; {
        list: ro u32 [?], count: ro u32 [1], e: u32, rows: ro f32 [?], g: rw f32 [e],
    }
}

/// Every kernel's definition, in the order of the sources.
pub const ALL: &[&KernelDef] = &[
    PhiloxBlocks::DEF,
    Permute::DEF,
    MakeBatch::DEF,
    Gather::DEF,
    Scatter::DEF,
    BiasReluDropoutFwd::DEF,
    BiasReluDropoutBwd::DEF,
    SumBlocks::DEF,
    ColSums::DEF,
    Final::DEF,
    FinalReduce::DEF,
    Cast::DEF,
    CheckFinite::DEF,
    StashLoss::DEF,
    Adam::DEF,
    AdamWide::DEF,
    LinearFwd::DEF,
    LinearBwd::DEF,
    Mark::DEF,
    Slots::DEF,
    Keys::DEF,
    Scan::DEF,
    RadixHist::DEF,
    RadixScatter::DEF,
    Segments::DEF,
    GatherRows::DEF,
    FactoredZ::DEF,
    SegmentSum::DEF,
    SegmentSumRows::DEF,
    ScatterRows::DEF,
];

/// The definition of kernel `name`.
pub fn find(name: &str) -> Option<&'static KernelDef> {
    ALL.iter().copied().find(|d| d.name == name)
}

/// The C parameter list of each kernel in `source` (`extern "C" __global__ void NAME(...)`),
/// as (name, [(C type without qualifiers, parameter name)]).
pub fn c_signatures(source: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut out = vec![];
    let mut rest = source;
    while let Some(at) = rest.find("extern \"C\" __global__ void") {
        rest = &rest[at + "extern \"C\" __global__ void".len()..];
        rest = rest.trim_start();
        // `__launch_bounds__(a, b) name(`: skip the bounds.
        if let Some(after) = rest.strip_prefix("__launch_bounds__") {
            rest = &after[after.find(')').map_or(0, |c| c + 1)..];
        }
        let open = rest.find('(').unwrap_or(0);
        let name = rest[..open].trim().to_string();
        let body = &rest[open + 1..];
        let close = body.find(')').unwrap_or(0);
        let params = body[..close]
            .split(',')
            .map(|p| {
                let words: Vec<&str> = p
                    .split_whitespace()
                    .filter(|w| !matches!(*w, "const" | "__restrict__"))
                    .collect();
                let (ty, name) = words.split_at(words.len().saturating_sub(1));
                let mut ty = ty.join(" ");
                let mut name = name.join("");
                while let Some(n) = name.strip_prefix('*') {
                    ty.push('*');
                    name = n.to_string();
                }
                (ty.replace(" *", "*"), name)
            })
            .collect();
        out.push((name, params));
        rest = &body[close..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The C spelling of a parameter's type as the sources write it.
    fn c_type(t: Ty) -> String {
        match t {
            Ty::Ptr {
                elem: Elem::U64, ..
            } => "u64*|unsigned long long*".into(),
            Ty::Ptr { elem, .. } => format!("{}*", elem.c_name()),
            t => t.c_name().to_string(),
        }
    }

    #[test]
    fn every_definition_matches_the_c_signature_in_the_sources() {
        let mut seen = 0;
        for (_, src) in crate::kernels::SOURCES {
            for (name, params) in c_signatures(src) {
                let def = find(&name).unwrap_or_else(|| panic!("{name} has no definition"));
                assert_eq!(params.len(), def.params.len(), "{name}: parameter count");
                for (p, (cty, cname)) in def.params.iter().zip(&params) {
                    assert_eq!(p.name, cname, "{name}: parameter names");
                    let want = c_type(p.ty);
                    assert!(
                        want.split('|').any(|w| w == cty),
                        "{name}.{cname}: C type {cty}, definition {want}"
                    );
                }
                seen += 1;
            }
        }
        assert_eq!(seen, ALL.len(), "a definition without a kernel");
    }

    #[test]
    fn extents_follow_the_scalar_arguments_and_the_grid() {
        let h = RadixHist {
            keys: Ptr::new(64),
            n: 1000,
            shift: 8,
            hist: Ptr::new(4096),
        };
        assert_eq!(h.extents(3), vec![Some(1000), None, None, Some(768)]);
        assert_eq!(
            h.args().iter().map(KArg::class).collect::<String>(),
            RadixHist::DEF.classes()
        );
        assert_eq!(RadixHist::DEF.classes(), "quuq");
        assert_eq!(MakeBatch::DEF.classes(), "uuuuuqqqqqquuuuuquqqqqqq");
    }
}
