//! [`HostDevice`]: the CUDA backend's device in host memory, for CI without a GPU. Its buffers
//! are 256-byte-aligned host allocations it keeps a register of; its kernels are the same
//! sources compiled for the CPU ([`super::host_kernels`]); its GEMMs are computed on the CPU
//! after the checks cuBLAS makes ([`GemmCall::check`]) and rounded as the math mode does (TF32
//! inputs rounded to 10 mantissa bits; FP16/BF16 inputs as stored; FP32 accumulation). Every
//! launch, copy and GEMM is checked against the register first: each pointer must lie in a live
//! buffer, aligned to its element, with room for what the call touches — a wrong size, leading
//! dimension or argument is an error naming the call instead of a corrupted heap. The stream
//! is synchronous: a call returns when its work is done.

use super::host_kernels::{self, HostKernels};
use super::{Common, Device, GemmCall, KArg, Marker, Profile, RawBuf, StreamHandle};
use crate::kdef::{KernelDef, Null, Ty};
use crate::kernels::Act;
use crate::nccl::ffi::RawStream;
use crate::{CudaError, DeviceInfo};
use ncf_core::train::Precision;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Alignment of every allocation (cudaMalloc's is at least 256 bytes).
const ALIGN: usize = 256;
/// Bytes after every allocation filled with [`CANARY`] and checked after every launch, copy
/// and GEMM: a write past the end of a buffer is reported naming the call and the buffer.
const TAIL: usize = 256;
const CANARY: u8 = 0xa5;

/// A live allocation: its size and what it holds (for messages).
struct Entry {
    bytes: usize,
    what: String,
}

type Register = Arc<Mutex<BTreeMap<u64, Entry>>>;

/// Work a capture recorded ([`Device::begin_capture`]), run again by [`Device::replay`] through
/// the same checked calls.
#[derive(Clone)]
enum HostOp {
    Launch {
        def: &'static KernelDef,
        grid: u32,
        smem: u32,
        args: Vec<KArg>,
        extents: Vec<Option<u64>>,
        sizes: String,
    },
    Gemm {
        call: GemmCall<'static>,
        what: String,
    },
    Zero {
        dst: u64,
        bytes: usize,
        what: String,
    },
    Copy {
        src: u64,
        dst: u64,
        bytes: usize,
        what: String,
    },
}

/// The host device of one precision.
pub struct HostDevice {
    common: Common,
    kernels: Arc<HostKernels>,
    register: Register,
    /// The capture in progress: what it is for and the work recorded so far.
    capture: RefCell<Option<(String, Vec<HostOp>)>>,
    /// The graphs captured, by number.
    graphs: RefCell<Vec<Vec<HostOp>>>,
}

impl HostDevice {
    /// The host device computing in `precision` (compiles its kernels on first use).
    pub fn new(precision: Precision) -> Result<HostDevice, CudaError> {
        let act = super::act_of(precision);
        let kernels = host_kernels::load(act)?;
        let threads = std::env::var("NCF_HOST_THREADS")
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|&t| t > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get() as u32));
        Ok(HostDevice {
            common: Common {
                info: DeviceInfo {
                    ordinal: 0,
                    name: format!("host device ({threads} threads)"),
                    capability: (0, 0),
                    total_mem: 0,
                    device_count: 1,
                    driver_version: 0,
                },
                act,
                precision,
                // One "multiprocessor" per thread that runs blocks.
                sm_count: threads,
                profile: Profile::from_env(),
            },
            kernels,
            register: Arc::default(),
            capture: RefCell::default(),
            graphs: RefCell::default(),
        })
    }

    /// Run each launch's blocks on `threads` OS threads (at least 1).
    pub fn with_threads(mut self, threads: u32) -> Self {
        self.common.sm_count = threads.max(1);
        self.common.info.name = format!("host device ({} threads)", self.common.sm_count);
        self
    }

    /// The library the kernels run from.
    pub fn kernel_library(&self) -> &std::path::Path {
        &self.kernels.path
    }

    /// The live buffer holding `[addr, addr + bytes)`, as (start, size, what), or why not.
    /// Inside a capture: record `op` (true); else false, and the caller runs it.
    fn record(&self, op: impl FnOnce() -> HostOp) -> bool {
        match self.capture.borrow_mut().as_mut() {
            Some((_, ops)) => {
                ops.push(op());
                true
            }
            None => false,
        }
    }

    /// An error when a capture is in progress: `call` would block or read host memory.
    fn refuse_in_capture(&self, call: &str) -> Result<(), CudaError> {
        match self.capture.borrow().as_ref() {
            Some((what, _)) => Err(CudaError::Invalid(format!(
                "host device: {call} inside the capture of {what}: a captured stream cannot \
                 block on the host or read host memory (end the capture first)"
            ))),
            None => Ok(()),
        }
    }

    fn find(&self, addr: u64, bytes: u64) -> Result<(u64, usize, String), String> {
        let reg = self.register.lock().unwrap_or_else(|p| p.into_inner());
        let Some((&start, e)) = reg.range(..=addr).next_back() else {
            return Err(format!("{addr:#x} is not in any buffer of this device"));
        };
        let end = start + e.bytes as u64;
        if addr >= end.max(start + 1) {
            return Err(format!(
                "{addr:#x} is not in any buffer of this device (the nearest below, {}, ends at \
                 offset {} of {} bytes)",
                e.what, e.bytes, e.bytes
            ));
        }
        if addr + bytes > end {
            let off = addr - start;
            return Err(format!(
                "needs {bytes} bytes from offset {off} of {} ({} bytes): {} bytes past its end",
                e.what,
                e.bytes,
                addr + bytes - end
            ));
        }
        Ok((start, e.bytes, e.what.clone()))
    }

    fn check_span(&self, addr: u64, bytes: usize, call: &str) -> Result<(), CudaError> {
        if bytes == 0 {
            return Ok(());
        }
        self.find(addr, bytes as u64)
            .map(|_| ())
            .map_err(|why| CudaError::Invalid(format!("host device: {call}: {why}")))
    }

    /// Every buffer's tail still holds the canary; else the call `what` wrote past its end.
    fn check_tails(&self, what: &str) -> Result<(), CudaError> {
        let reg = self.register.lock().unwrap_or_else(|p| p.into_inner());
        for (&start, e) in reg.iter() {
            // SAFETY: every registered buffer has TAIL bytes after its end (alloc_raw).
            let tail =
                unsafe { std::slice::from_raw_parts((start as *const u8).add(e.bytes), TAIL) };
            if let Some(k) = tail.iter().position(|&b| b != CANARY) {
                let last = tail.iter().rposition(|&b| b != CANARY).unwrap_or(k);
                // Repaired, so that the next call is judged on its own writes.
                // SAFETY: as above.
                unsafe { std::ptr::write_bytes((start as *mut u8).add(e.bytes), CANARY, TAIL) };
                return Err(CudaError::Invalid(format!(
                    "host device: {what} wrote past the end of {} ({} bytes): bytes {k}..={last} \
                     after it changed",
                    e.what, e.bytes
                )));
            }
        }
        Ok(())
    }

    /// The checks of a launch of `def`: argument classes, geometry, and every pointer against
    /// the register (null only where allowed, aligned, room for its extent).
    fn check_launch(
        &self,
        def: &KernelDef,
        grid: u32,
        smem: u32,
        args: &[KArg],
        extents: &[Option<u64>],
    ) -> Result<(), String> {
        if args.len() != def.params.len() || extents.len() != def.params.len() {
            return Err(format!(
                "{} arguments, the kernel has {} parameters",
                args.len(),
                def.params.len()
            ));
        }
        if grid == 0 {
            return Err("a grid of 0 blocks".into());
        }
        if smem > def.max_smem {
            return Err(format!(
                "{smem} bytes of shared memory, its geometry allows {}",
                def.max_smem
            ));
        }
        for ((p, a), ext) in def.params.iter().zip(args).zip(extents) {
            if a.class() != p.ty.class() {
                return Err(format!(
                    "argument {} is a {:?}, the kernel takes {}",
                    p.name,
                    a,
                    p.ty.c_name()
                ));
            }
            let Ty::Ptr { elem, null, .. } = p.ty else {
                continue;
            };
            let addr = a.bits();
            let size = elem.bytes(self.common.act.bytes()) as u64;
            if addr == 0 {
                let empty = matches!(ext, Some(0));
                match (null, empty) {
                    (Null::Always, _) | (Null::WhenEmpty, true) => continue,
                    _ => {
                        return Err(format!(
                            "argument {} is null{}",
                            p.name,
                            ext.map(|e| format!(" but the kernel touches {e} elements from it"))
                                .unwrap_or_default()
                        ))
                    }
                }
            }
            if addr % size != 0 {
                return Err(format!(
                    "argument {} = {addr:#x} is not aligned to its {size}-byte elements",
                    p.name
                ));
            }
            let bytes = ext.unwrap_or(0).saturating_mul(size);
            self.find(addr, bytes).map_err(|why| {
                let n = ext.map(|e| format!(" ({e} elements)")).unwrap_or_default();
                format!("argument {}{n}: {why}", p.name)
            })?;
        }
        Ok(())
    }

    /// Operand `x` of a GEMM (`span` elements of the activation type) as f32, rounded as the
    /// math mode rounds its inputs.
    fn operand(&self, x: u64, span: u64) -> Vec<f32> {
        let n = span as usize;
        // SAFETY: `x .. x + span` was checked to lie in a live buffer of this device.
        unsafe {
            match self.common.act {
                Act::F32 => {
                    let s = std::slice::from_raw_parts(x as *const f32, n);
                    match self.common.precision {
                        Precision::Tf32 => s.iter().map(|&v| tf32(v)).collect(),
                        _ => s.to_vec(),
                    }
                }
                Act::F16 => std::slice::from_raw_parts(x as *const u16, n)
                    .iter()
                    .map(|&h| half::f16::from_bits(h).to_f32())
                    .collect(),
                Act::Bf16 => std::slice::from_raw_parts(x as *const u16, n)
                    .iter()
                    .map(|&h| half::bf16::from_bits(h).to_f32())
                    .collect(),
            }
        }
    }
}

/// `v` rounded to TF32 (10 explicit mantissa bits, to nearest even), as the tensor cores read
/// FP32 inputs in TF32 mode.
pub fn tf32(v: f32) -> f32 {
    if !v.is_finite() {
        return v;
    }
    let u = v.to_bits();
    let r = u.wrapping_add(0x0fff + ((u >> 13) & 1)) & !0x1fff;
    f32::from_bits(r)
}

/// The owner of a host allocation: freed and unregistered when dropped.
struct HostAlloc {
    ptr: *mut u8,
    layout: std::alloc::Layout,
    register: Register,
}

impl Drop for HostAlloc {
    fn drop(&mut self) {
        let mut reg = self.register.lock().unwrap_or_else(|p| p.into_inner());
        reg.remove(&(self.ptr as u64));
        // SAFETY: allocated with this layout by alloc_raw, freed once.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) };
    }
}

impl Device for HostDevice {
    fn describe(&self) -> String {
        format!("{} ({})", self.common.info.name, self.common.act.name())
    }

    fn common(&self) -> &Common {
        &self.common
    }

    fn alloc_raw(&self, bytes: usize, what: &str) -> Result<RawBuf, CudaError> {
        let layout = std::alloc::Layout::from_size_align(bytes + TAIL, ALIGN)
            .map_err(|e| CudaError::Invalid(format!("allocating {what} ({bytes} bytes): {e}")))?;
        // SAFETY: a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            return Err(CudaError::Invalid(format!(
                "host device: out of memory allocating {what} ({bytes} bytes)"
            )));
        }
        // SAFETY: the tail is inside the allocation just made.
        unsafe { std::ptr::write_bytes(ptr.add(bytes), CANARY, TAIL) };
        self.register
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                ptr as u64,
                Entry {
                    bytes,
                    what: what.to_string(),
                },
            );
        let owner = HostAlloc {
            ptr,
            layout,
            register: self.register.clone(),
        };
        Ok(RawBuf::new(ptr as u64, bytes, Box::new(owner)))
    }

    fn upload_raw(&self, dst: u64, src: &[u8], what: &str) -> Result<(), CudaError> {
        self.refuse_in_capture(&format!("uploading {what}"))?;
        self.check_span(dst, src.len(), &format!("uploading {what}"))?;
        // SAFETY: checked to lie in a live buffer; host memory does not overlap it.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst as *mut u8, src.len()) };
        Ok(())
    }

    fn download_raw(&self, src: u64, out: &mut [u8], what: &str) -> Result<(), CudaError> {
        self.refuse_in_capture(&format!("downloading {what} (a blocking read)"))?;
        self.common.profile.count_read();
        self.check_span(src, out.len(), &format!("downloading {what}"))?;
        // SAFETY: as upload_raw.
        unsafe { std::ptr::copy_nonoverlapping(src as *const u8, out.as_mut_ptr(), out.len()) };
        Ok(())
    }

    fn zero_raw(&self, dst: u64, bytes: usize, what: &str) -> Result<(), CudaError> {
        if self.record(|| HostOp::Zero {
            dst,
            bytes,
            what: what.to_string(),
        }) {
            return Ok(());
        }
        self.check_span(dst, bytes, &format!("zeroing {what}"))?;
        // SAFETY: checked.
        unsafe { std::ptr::write_bytes(dst as *mut u8, 0, bytes) };
        Ok(())
    }

    fn copy_raw(&self, src: u64, dst: u64, bytes: usize, what: &str) -> Result<(), CudaError> {
        if self.record(|| HostOp::Copy {
            src,
            dst,
            bytes,
            what: what.to_string(),
        }) {
            return Ok(());
        }
        let call = format!("copying {what}");
        self.check_span(src, bytes, &call)?;
        self.check_span(dst, bytes, &call)?;
        // SAFETY: both checked; `copy` allows overlap.
        unsafe { std::ptr::copy(src as *const u8, dst as *mut u8, bytes) };
        Ok(())
    }

    fn launch_raw(
        &self,
        def: &'static KernelDef,
        grid: u32,
        smem: u32,
        args: &[KArg],
        extents: &[Option<u64>],
        sizes: &str,
    ) -> Result<(), CudaError> {
        let what = || {
            format!(
                "kernel {} ({sizes}; grid {grid}, block {})",
                def.name, def.block
            )
        };
        self.check_launch(def, grid, smem, args, extents)
            .map_err(|why| CudaError::Invalid(format!("host device: {}: {why}", what())))?;
        if self.record(|| HostOp::Launch {
            def,
            grid,
            smem,
            args: args.to_vec(),
            extents: extents.to_vec(),
            sizes: sizes.to_string(),
        }) {
            return Ok(());
        }
        let bits: Vec<u64> = args.iter().map(KArg::bits).collect();
        use super::DeviceExt;
        self.timed(def.name, || {
            self.kernels
                .launch(def, grid, smem, &bits, self.common.sm_count)
                .map_err(|why| CudaError::Invalid(format!("host device: {}: {why}", what())))
        })?;
        self.check_tails(&what())
    }

    fn gemm(&self, g: &GemmCall) -> Result<(), CudaError> {
        let call = format!("cuBLAS gemm ({})", g.describe(self.common.act));
        let bad = |why: String| CudaError::Invalid(format!("host device: {call}: {why}"));
        g.check().map_err(bad)?;
        if self.record(|| HostOp::Gemm {
            call: GemmCall { what: "", ..*g },
            what: g.what.to_string(),
        }) {
            return Ok(());
        }
        let (sa, sb, sc) = g.spans();
        let ab = self.common.act.bytes() as u64;
        for (name, p, span, size) in [("A", g.a, sa, ab), ("B", g.b, sb, ab), ("C", g.c, sc, 4)] {
            if span == 0 {
                continue;
            }
            if p % size != 0 {
                return Err(bad(format!(
                    "{name} = {p:#x} is not aligned to {size} bytes"
                )));
            }
            self.find(p, span * size)
                .map_err(|why| bad(format!("{name} ({span} elements): {why}")))?;
        }
        if sc == 0 {
            return Ok(());
        }
        let run = || {
            let a = self.operand(g.a, sa);
            let b = self.operand(g.b, sb);
            let (lda, ldb, ldc) = (g.lda as isize, g.ldb as isize, g.ldc as isize);
            let (rsa, csa) = if g.ta { (lda, 1) } else { (1, lda) };
            let (rsb, csb) = if g.tb { (ldb, 1) } else { (1, ldb) };
            // SAFETY: C's span was checked; A and B are the host copies just made; the strides
            // stay inside them (spans computed from the same dimensions).
            unsafe {
                matrixmultiply::sgemm(
                    g.m,
                    g.k,
                    g.n,
                    1.0,
                    a.as_ptr(),
                    rsa,
                    csa,
                    b.as_ptr(),
                    rsb,
                    csb,
                    g.beta,
                    g.c as *mut f32,
                    1,
                    ldc,
                );
            }
            Ok(())
        };
        let role = g.what.split(" mlp").next().unwrap_or(g.what);
        use super::DeviceExt;
        self.timed(&format!("gemm {role}"), run)?;
        self.check_tails(&call)
    }

    fn sync(&self, what: &str) -> Result<(), CudaError> {
        self.refuse_in_capture(&format!("synchronising ({what})"))
    }

    fn stream(&self) -> Arc<dyn StreamHandle> {
        Arc::new(HostStream)
    }

    fn begin_capture(&self, what: &str) -> Result<(), CudaError> {
        self.refuse_in_capture(&format!("beginning the capture of {what}"))?;
        *self.capture.borrow_mut() = Some((what.to_string(), Vec::new()));
        Ok(())
    }

    fn end_capture(&self, what: &str) -> Result<usize, CudaError> {
        let Some((_, ops)) = self.capture.borrow_mut().take() else {
            return Err(CudaError::Invalid(format!(
                "host device: ending the capture of {what}: none in progress"
            )));
        };
        let mut graphs = self.graphs.borrow_mut();
        graphs.push(ops);
        Ok(graphs.len() - 1)
    }

    fn replay(&self, graph: usize, what: &str) -> Result<(), CudaError> {
        self.refuse_in_capture(&format!("replaying graph {graph} ({what})"))?;
        let ops = match self.graphs.borrow().get(graph) {
            Some(ops) => ops.clone(),
            None => {
                return Err(CudaError::Invalid(format!(
                    "host device: replaying graph {graph} ({what}): no such graph"
                )))
            }
        };
        for op in &ops {
            match op {
                HostOp::Launch {
                    def,
                    grid,
                    smem,
                    args,
                    extents,
                    sizes,
                } => self.launch_raw(def, *grid, *smem, args, extents, sizes)?,
                HostOp::Gemm { call, what } => self.gemm(&GemmCall { what, ..*call })?,
                HostOp::Zero { dst, bytes, what } => self.zero_raw(*dst, *bytes, what)?,
                HostOp::Copy {
                    src,
                    dst,
                    bytes,
                    what,
                } => self.copy_raw(*src, *dst, *bytes, what)?,
            }
        }
        Ok(())
    }
}

/// The host device's stream: synchronous, so always idle.
struct HostStream;

impl StreamHandle for HostStream {
    fn raw(&self) -> RawStream {
        std::ptr::null_mut()
    }
    fn bind(&self) -> Result<(), CudaError> {
        Ok(())
    }
    fn marker(&self, _what: &str) -> Result<Box<dyn Marker>, CudaError> {
        Ok(Box::new(Done))
    }
}

struct Done;

impl Marker for Done {
    fn is_complete(&self) -> Result<bool, CudaError> {
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tf32_keeps_ten_mantissa_bits_rounding_to_nearest_even() {
        assert_eq!(tf32(1.0), 1.0);
        let one_plus = f32::from_bits(1.0f32.to_bits() + (1 << 13));
        assert_eq!(tf32(one_plus), one_plus);
        // Half-way between two TF32 values: to the even one.
        let half = f32::from_bits(1.0f32.to_bits() + (1 << 12));
        assert_eq!(tf32(half), 1.0);
        let above = f32::from_bits(1.0f32.to_bits() + (1 << 12) + 1);
        assert_eq!(tf32(above), one_plus);
        assert!(tf32(f32::NAN).is_nan());
    }
}
