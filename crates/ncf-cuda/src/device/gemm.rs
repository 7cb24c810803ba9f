//! A GEMM as the CUDA backend asks for it (cuBLAS's column-major convention): C (FP32, m×n) =
//! op(A) op(B) + beta C with A and B of the activation type, and the checks cuBLAS makes of
//! such a call before it runs (CUBLAS_STATUS_INVALID_VALUE), plus the span of each operand,
//! which the host device holds against the buffers the pointers lie in.

use crate::kernels::Act;

/// One GEMM: `what` names it in messages ("forward mlp.0").
#[derive(Clone, Copy, Debug)]
pub struct GemmCall<'a> {
    pub what: &'a str,
    pub ta: bool,
    pub tb: bool,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: u64,
    pub lda: usize,
    pub b: u64,
    pub ldb: usize,
    pub c: u64,
    pub ldc: usize,
    pub beta: f32,
}

impl<'a> GemmCall<'a> {
    /// The call of `shape` on the operands `(a, b, c)`.
    pub fn of_shape(
        what: &'a str,
        s: &crate::factored::GemmShape,
        (a, b, c): (u64, u64, u64),
        beta: f32,
    ) -> Self {
        GemmCall {
            what,
            ta: s.ta,
            tb: s.tb,
            m: s.m,
            n: s.n,
            k: s.k,
            a,
            lda: s.lda,
            b,
            ldb: s.ldb,
            c,
            ldc: s.ldc,
            beta,
        }
    }

    /// "forward mlp.0: m=64 n=1024 k=128 lda=128 ldb=128 ldc=64 bf16" for messages.
    pub fn describe(&self, act: Act) -> String {
        format!(
            "{}: {}{} m={} n={} k={} lda={} ldb={} ldc={} {}",
            self.what,
            if self.ta { "Aᵀ" } else { "A" },
            if self.tb { "Bᵀ" } else { "B" },
            self.m,
            self.n,
            self.k,
            self.lda,
            self.ldb,
            self.ldc,
            act.name()
        )
    }

    /// Rows of A and B as stored (column-major): the least leading dimension of each.
    fn stored_rows(&self) -> (usize, usize) {
        (
            if self.ta { self.k } else { self.m },
            if self.tb { self.n } else { self.k },
        )
    }

    /// The argument checks of cublasSgemm / cublasGemmEx: sizes that fit an int, and leading
    /// dimensions at least the stored rows (and at least 1).
    pub fn check(&self) -> Result<(), String> {
        for (name, v) in [("m", self.m), ("n", self.n), ("k", self.k)] {
            if v > i32::MAX as usize {
                return Err(format!("{name} = {v} does not fit cuBLAS's int"));
            }
        }
        let (ra, rb) = self.stored_rows();
        for (name, ld, rows) in [
            ("lda", self.lda, ra),
            ("ldb", self.ldb, rb),
            ("ldc", self.ldc, self.m),
        ] {
            if ld < rows.max(1) || ld > i32::MAX as usize {
                return Err(format!(
                    "{name} = {ld} but the operand has {rows} rows as stored (cuBLAS needs \
                     {name} >= max(1, {rows})): CUBLAS_STATUS_INVALID_VALUE"
                ));
            }
        }
        Ok(())
    }

    /// Elements of A, B and C the call reads or writes from their pointers (0 when the
    /// operand is not touched: an empty product).
    pub fn spans(&self) -> (u64, u64, u64) {
        let span = |ld: usize, rows: usize, cols: usize| -> u64 {
            if rows == 0 || cols == 0 {
                0
            } else {
                (ld as u64) * (cols as u64 - 1) + rows as u64
            }
        };
        if self.m == 0 || self.n == 0 {
            return (0, 0, 0);
        }
        let (ra, rb) = self.stored_rows();
        let (ca, cb) = (
            if self.ta { self.m } else { self.k },
            if self.tb { self.k } else { self.n },
        );
        (
            span(self.lda, ra, ca),
            span(self.ldb, rb, cb),
            span(self.ldc, self.m, self.n),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(
        ta: bool,
        tb: bool,
        (m, n, k): (usize, usize, usize),
        lds: (usize, usize, usize),
    ) -> GemmCall<'static> {
        GemmCall {
            what: "t",
            ta,
            tb,
            m,
            n,
            k,
            a: 0,
            lda: lds.0,
            b: 0,
            ldb: lds.1,
            c: 0,
            ldc: lds.2,
            beta: 0.0,
        }
    }

    #[test]
    fn leading_dimensions_are_checked_as_cublas_does() {
        // The forward GEMM of a layer: Wᵀ (fout × fin stored fin × fout) times X (fin × n).
        assert!(call(true, false, (64, 100, 128), (128, 128, 64))
            .check()
            .is_ok());
        let e = call(true, false, (64, 100, 128), (64, 128, 64))
            .check()
            .unwrap_err();
        assert!(e.contains("lda = 64") && e.contains("128 rows"), "{e}");
        let e = call(false, false, (64, 100, 128), (64, 100, 64))
            .check()
            .unwrap_err();
        assert!(e.contains("ldb = 100"), "{e}");
        assert!(call(false, true, (8, 5, 3), (8, 5, 7))
            .check()
            .unwrap_err()
            .contains("ldc = 7"));
    }

    #[test]
    fn spans_cover_the_last_column_and_nothing_more() {
        // A: 4 rows stored with lda 6, 3 columns: 6 * 2 + 4.
        let c = call(false, false, (4, 2, 3), (6, 3, 4));
        // B: 3 rows with ldb 3, 2 columns: 3 + 3; C: 4 rows with ldc 4, 2 columns: 4 + 4.
        assert_eq!(c.spans(), (16, 6, 8));
        let c = call(true, true, (4, 2, 3), (3, 2, 4));
        assert_eq!(c.spans(), (3 * 3 + 3, 2 * 2 + 2, 8));
        assert_eq!(call(false, false, (0, 2, 3), (1, 3, 1)).spans(), (0, 0, 0));
    }
}
