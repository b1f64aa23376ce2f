//! The strategies, one per file. Each file's docs give the formula, the paper and the
//! defaults; [`crate::registry`] lists them by name.
//!
//! Loss-based (one backward pass): [`ew`], [`uw`], [`dwa`], [`rlw`], [`gls`],
//! [`scale_invariant`], [`imtl_l`], [`stch`], [`famo`].
//!
//! Gradient-based, weightings of the Gramian: [`mgda`] (and MGDA-UB), [`pcgrad`],
//! [`gradvac`], [`imtl_g`], [`imtl`], [`cagrad`], [`nash_mtl`], [`aligned_mtl`] (and
//! Aligned-MTL-UB), [`fairgrad`], [`upgrad`], [`dualproj`], [`config`], [`gradnorm`],
//! [`excess_mtl`]; with state or elementwise rules on the gradients themselves: [`moco`],
//! [`db_mtl`], [`graddrop`], [`modo`], [`sdmgrad`].
//!
//! Bilevel: [`auto_lambda`].

pub mod aligned_mtl;
pub mod auto_lambda;
pub mod cagrad;
pub mod config;
pub mod db_mtl;
pub mod dualproj;
pub mod dwa;
pub mod ew;
pub mod excess_mtl;
pub mod fairgrad;
pub mod famo;
pub mod gls;
pub mod graddrop;
pub mod gradnorm;
pub mod gradvac;
pub mod imtl;
pub mod imtl_g;
pub mod imtl_l;
pub mod mgda;
pub mod moco;
pub mod modo;
pub mod nash_mtl;
pub mod pcgrad;
pub mod rlw;
pub mod scale_invariant;
pub mod sdmgrad;
pub mod state;
pub mod stch;
pub mod upgrad;
pub mod uw;
