//! The MLP's GEMMs through cuBLAS: FP32/TF32 by sgemm, FP16/BF16 by gemmEx with FP32
//! accumulation and output.

use crate::device::Gpu;
use crate::kernels::Act;
use crate::CudaError;
use cudarc::cublas::{result as blas_result, sys as blas_sys};

impl Gpu {
    /// C (f32, column-major m×n) = op(A) op(B) + beta C with A, B of the activation type; FP32
    /// and TF32 by sgemm (the handle's math mode decides TF32), FP16/BF16 by gemmEx, FP32 accumulate.
    #[allow(clippy::too_many_arguments)]
    pub fn gemm(
        &self,
        what: &str,
        ta: bool,
        tb: bool,
        (m, n, k): (usize, usize, usize),
        a: u64,
        lda: usize,
        b: u64,
        ldb: usize,
        c: u64,
        ldc: usize,
        beta: f32,
    ) -> Result<(), CudaError> {
        use blas_sys::cublasOperation_t::{CUBLAS_OP_N, CUBLAS_OP_T};
        let op = |t| if t { CUBLAS_OP_T } else { CUBLAS_OP_N };
        let alpha = 1.0f32;
        let h = *self.blas.handle();
        let dims = format!(
            "{what}: m={m} n={n} k={k} lda={lda} ldb={ldb} ldc={ldc} {}",
            self.act.name()
        );
        let t0 = self.profile_start()?;
        let res = unsafe {
            match self.act {
                Act::F32 => blas_result::sgemm(
                    h,
                    op(ta),
                    op(tb),
                    m as i32,
                    n as i32,
                    k as i32,
                    &alpha,
                    a as *const f32,
                    lda as i32,
                    b as *const f32,
                    ldb as i32,
                    &beta,
                    c as *mut f32,
                    ldc as i32,
                ),
                Act::F16 | Act::Bf16 => {
                    let t = if self.act == Act::F16 {
                        blas_sys::cudaDataType::CUDA_R_16F
                    } else {
                        blas_sys::cudaDataType::CUDA_R_16BF
                    };
                    blas_result::gemm_ex(
                        h,
                        op(ta),
                        op(tb),
                        m as i32,
                        n as i32,
                        k as i32,
                        &alpha as *const f32 as *const _,
                        a as *const _,
                        t,
                        lda as i32,
                        b as *const _,
                        t,
                        ldb as i32,
                        &beta as *const f32 as *const _,
                        c as *mut _,
                        blas_sys::cudaDataType::CUDA_R_32F,
                        ldc as i32,
                        blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                        blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
                    )
                }
            }
        };
        res.map_err(|e| CudaError::call(format!("cuBLAS gemm ({dims})"), e))?;
        if self.sync_each {
            self.sync(&dims)?;
        }
        // Profile by GEMM role ("forward mlp.0" -> "gemm forward").
        let role = what.split(" mlp").next().unwrap_or(what);
        self.profile_end(&format!("gemm {role}"), t0)
    }

    /// [`Gpu::gemm`] with the arguments of `shape` (the factored path's shapes are built and
    /// host-tested in [`crate::factored`]).
    pub fn gemm_shape(
        &self,
        what: &str,
        shape: &crate::factored::GemmShape,
        (a, b, c): (u64, u64, u64),
        beta: f32,
    ) -> Result<(), CudaError> {
        let s = shape;
        self.gemm(
            what,
            s.ta,
            s.tb,
            (s.m, s.n, s.k),
            a,
            s.lda,
            b,
            s.ldb,
            c,
            s.ldc,
            beta,
        )
    }
}
