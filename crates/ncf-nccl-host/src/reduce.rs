//! NCCL's data types and reduction operations, and the element-wise fold rank 0 applies to the
//! ranks' buffers in rank order (so every rank gets the same bits, whatever the arrival order).

/// `ncclDataType_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    I8 = 0,
    U8 = 1,
    I32 = 2,
    U32 = 3,
    I64 = 4,
    U64 = 5,
    F16 = 6,
    F32 = 7,
    F64 = 8,
    Bf16 = 9,
}

impl DType {
    pub fn from_code(code: u32) -> Option<DType> {
        use DType::*;
        [I8, U8, I32, U32, I64, U64, F16, F32, F64, Bf16]
            .into_iter()
            .find(|d| *d as u32 == code)
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        use DType::*;
        match self {
            I8 | U8 => 1,
            F16 | Bf16 => 2,
            I32 | U32 | F32 => 4,
            I64 | U64 | F64 => 8,
        }
    }

    pub fn name(self) -> &'static str {
        use DType::*;
        match self {
            I8 => "i8",
            U8 => "u8",
            I32 => "i32",
            U32 => "u32",
            I64 => "i64",
            U64 => "u64",
            F16 => "f16",
            F32 => "f32",
            F64 => "f64",
            Bf16 => "bf16",
        }
    }
}

/// `ncclRedOp_t` (the built-in operations the stand-in reduces; `ncclAvg` is not one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedOp {
    Sum = 0,
    Prod = 1,
    Max = 2,
    Min = 3,
}

impl RedOp {
    pub fn from_code(code: u32) -> Option<RedOp> {
        use RedOp::*;
        [Sum, Prod, Max, Min]
            .into_iter()
            .find(|o| *o as u32 == code)
    }

    pub fn name(self) -> &'static str {
        match self {
            RedOp::Sum => "sum",
            RedOp::Prod => "prod",
            RedOp::Max => "max",
            RedOp::Min => "min",
        }
    }
}

/// Whether `fold` can reduce `dtype` (f16 and bf16 cannot: ncf never reduces them).
pub fn reducible(dtype: DType) -> bool {
    !matches!(dtype, DType::F16 | DType::Bf16)
}

macro_rules! fold_as {
    ($t:ty, $acc:expr, $other:expr, $op:expr, $sum:expr, $prod:expr, $max:expr, $min:expr) => {{
        const N: usize = std::mem::size_of::<$t>();
        let f: fn($t, $t) -> $t = match $op {
            RedOp::Sum => $sum,
            RedOp::Prod => $prod,
            RedOp::Max => $max,
            RedOp::Min => $min,
        };
        for (a, b) in $acc.chunks_exact_mut(N).zip($other.chunks_exact(N)) {
            let x = <$t>::from_ne_bytes(a.try_into().expect("chunk of N bytes"));
            let y = <$t>::from_ne_bytes(b.try_into().expect("chunk of N bytes"));
            a.copy_from_slice(&f(x, y).to_ne_bytes());
        }
    }};
}

macro_rules! fold_int {
    ($t:ty, $acc:expr, $other:expr, $op:expr) => {
        fold_as!(
            $t,
            $acc,
            $other,
            $op,
            |x, y| x.wrapping_add(y),
            |x, y| x.wrapping_mul(y),
            |x, y| x.max(y),
            |x, y| x.min(y)
        )
    };
}

macro_rules! fold_float {
    ($t:ty, $acc:expr, $other:expr, $op:expr) => {
        // max/min as C's fmax/fmin (a NaN loses), as NCCL's device code.
        fold_as!(
            $t,
            $acc,
            $other,
            $op,
            |x, y| x + y,
            |x, y| x * y,
            |x, y| x.max(y),
            |x, y| x.min(y)
        )
    };
}

/// `acc[i] = op(acc[i], other[i])` over the elements of two equally long byte buffers.
pub fn fold(acc: &mut [u8], other: &[u8], dtype: DType, op: RedOp) -> Result<(), String> {
    if acc.len() != other.len() || !acc.len().is_multiple_of(dtype.size()) {
        return Err(format!(
            "reducing {} bytes with {} bytes of {}",
            acc.len(),
            other.len(),
            dtype.name()
        ));
    }
    match dtype {
        DType::I8 => fold_int!(i8, acc, other, op),
        DType::U8 => fold_int!(u8, acc, other, op),
        DType::I32 => fold_int!(i32, acc, other, op),
        DType::U32 => fold_int!(u32, acc, other, op),
        DType::I64 => fold_int!(i64, acc, other, op),
        DType::U64 => fold_int!(u64, acc, other, op),
        DType::F32 => fold_float!(f32, acc, other, op),
        DType::F64 => fold_float!(f64, acc, other, op),
        DType::F16 | DType::Bf16 => {
            return Err(format!(
                "the stand-in does not reduce {} (only broadcasts it)",
                dtype.name()
            ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes<T: Copy, const N: usize>(v: &[T], to: fn(T) -> [u8; N]) -> Vec<u8> {
        v.iter().flat_map(|&x| to(x)).collect()
    }

    #[test]
    fn codes_are_nccls() {
        assert_eq!(DType::from_code(7), Some(DType::F32));
        assert_eq!(DType::from_code(8), Some(DType::F64));
        assert_eq!(DType::from_code(5), Some(DType::U64));
        assert_eq!(DType::from_code(10), None);
        assert_eq!(RedOp::from_code(0), Some(RedOp::Sum));
        assert_eq!(RedOp::from_code(2), Some(RedOp::Max));
        assert_eq!(RedOp::from_code(4), None, "ncclAvg is not reduced");
        assert_eq!(DType::Bf16.size(), 2);
        assert!(!reducible(DType::F16));
    }

    #[test]
    fn sums_follow_the_order_of_the_folds() {
        // (1e16 + 1) - 1e16 = 0 in f64, while 1e16 - 1e16 + 1 = 1: the order is the result.
        let mut acc = bytes(&[1e16f64, 2.5], f64::to_ne_bytes);
        fold(
            &mut acc,
            &bytes(&[1.0f64, 0.5], f64::to_ne_bytes),
            DType::F64,
            RedOp::Sum,
        )
        .unwrap();
        fold(
            &mut acc,
            &bytes(&[-1e16f64, 1.0], f64::to_ne_bytes),
            DType::F64,
            RedOp::Sum,
        )
        .unwrap();
        assert_eq!(acc, bytes(&[0.0f64, 4.0], f64::to_ne_bytes));
    }

    #[test]
    fn max_min_prod_and_integer_wrapping() {
        let mut acc = bytes(&[3u64, u64::MAX, 1 << 40], u64::to_ne_bytes);
        let other = bytes(&[7u64, 1, 5], u64::to_ne_bytes);
        fold(&mut acc, &other, DType::U64, RedOp::Max).unwrap();
        assert_eq!(acc, bytes(&[7u64, u64::MAX, 1 << 40], u64::to_ne_bytes));
        fold(&mut acc, &other, DType::U64, RedOp::Sum).unwrap();
        assert_eq!(acc, bytes(&[14u64, 0, (1 << 40) + 5], u64::to_ne_bytes));
        let mut f = bytes(&[2.0f32, f32::NAN, -1.0], f32::to_ne_bytes);
        let g = bytes(&[3.0f32, 1.0, -4.0], f32::to_ne_bytes);
        fold(&mut f, &g, DType::F32, RedOp::Min).unwrap();
        assert_eq!(f, bytes(&[2.0f32, 1.0, -4.0], f32::to_ne_bytes));
        fold(&mut f, &g, DType::F32, RedOp::Prod).unwrap();
        assert_eq!(f, bytes(&[6.0f32, 1.0, 16.0], f32::to_ne_bytes));
        let mut i = bytes(&[i32::MAX], i32::to_ne_bytes);
        fold(
            &mut i,
            &bytes(&[1i32], i32::to_ne_bytes),
            DType::I32,
            RedOp::Sum,
        )
        .unwrap();
        assert_eq!(i, bytes(&[i32::MIN], i32::to_ne_bytes));
    }

    #[test]
    fn bad_lengths_and_half_types_are_errors() {
        assert!(fold(&mut [0; 8], &[0; 4], DType::F32, RedOp::Sum).is_err());
        assert!(fold(&mut [0; 6], &[0; 6], DType::F32, RedOp::Sum).is_err());
        let e = fold(&mut [0; 4], &[0; 4], DType::Bf16, RedOp::Sum).unwrap_err();
        assert!(e.contains("bf16"), "{e}");
    }
}
