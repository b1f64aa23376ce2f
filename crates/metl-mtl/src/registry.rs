//! The registry: every strategy by name, with a one-line description, what it needs, and
//! its configuration ([`StrategyConfig`], a serde enum tagged by `name`, so that a config
//! file selects a strategy as `{ name = "cagrad", c = 0.4 }`).

use crate::{
    error::{MtlError, Result},
    strategies::{
        aligned_mtl::{AlignedMtl, AlignedMtlConfig},
        auto_lambda::{AutoLambda, AutoLambdaConfig},
        cagrad::{CaGrad, CaGradConfig},
        config::{ConFig, ConFigConfig},
        db_mtl::{DbMtl, DbMtlConfig},
        dualproj::DualProj,
        dwa::{Dwa, DwaConfig},
        ew::{Ew, EwConfig},
        excess_mtl::{ExcessMtl, ExcessMtlConfig},
        fairgrad::{FairGrad, FairGradConfig},
        famo::{Famo, FamoConfig},
        gls::{Gls, GlsConfig},
        graddrop::{GradDrop, GradDropConfig},
        gradnorm::{GradNorm, GradNormConfig},
        gradvac::{GradVac, GradVacConfig},
        imtl::{Imtl, ImtlConfig},
        imtl_g::{ImtlG, ImtlGConfig},
        imtl_l::{ImtlL, ImtlLConfig},
        mgda::{Mgda, MgdaConfig},
        moco::{MoCo, MoCoConfig},
        modo::{MoDo, MoDoConfig},
        nash_mtl::{NashMtl, NashMtlConfig},
        pcgrad::{PcGrad, PcGradConfig},
        rlw::{Rlw, RlwConfig},
        scale_invariant::{ScaleInvariant, ScaleInvariantConfig},
        sdmgrad::{SdmGrad, SdmGradConfig},
        stch::{Stch, StchConfig},
        upgrad::{DualConeConfig, UpGrad},
        uw::{Uw, UwConfig},
    },
    strategy::{GradientSpace, Setup, Strategy},
};
use serde::{Deserialize, Serialize};

/// The family a strategy belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Weights computed from the losses; one backward pass.
    LossBased,
    /// Uses per-task gradients (`T` backward passes, or one per task through the heads
    /// only in the representation space).
    GradientBased,
    /// Learns the weights on a validation batch.
    Bilevel,
}

/// A registry entry.
#[derive(Debug, Clone, Copy)]
pub struct StrategyInfo {
    /// The name used in configs (`{ name = "..." }`).
    pub name: &'static str,
    /// The family.
    pub family: Family,
    /// What it needs besides the losses.
    pub needs: &'static str,
    /// A one-line description with the paper.
    pub description: &'static str,
}

const LOSSES: &str = "losses";
const PARAM_GRADS: &str = "losses + shared-parameter gradients";
const REP_GRADS: &str = "losses + representation gradients";

macro_rules! info {
    ($name:literal, $family:ident, $needs:expr, $description:literal) => {
        StrategyInfo { name: $name, family: Family::$family, needs: $needs, description: $description }
    };
}

/// Every strategy, in the order of `metl list`.
pub const STRATEGIES: &[StrategyInfo] = &[
    info!("ew", LossBased, LOSSES, "equal weighting: the plain sum of the losses (weights 1)"),
    info!("uw", LossBased, LOSSES, "uncertainty weighting with learned log-variances (Kendall et al. 2018)"),
    info!("dwa", LossBased, LOSSES, "dynamic weight average of epoch loss ratios (Liu et al. 2019)"),
    info!("rlw", LossBased, LOSSES, "random loss weighting, softmax of N(0, I) (Lin et al. 2022)"),
    info!("gls", LossBased, LOSSES, "geometric mean of the losses (Chennupati et al. 2019)"),
    info!("scale_invariant", LossBased, LOSSES, "sum of log-losses, scale-invariant (Navon et al. 2022)"),
    info!("imtl_l", LossBased, LOSSES, "IMTL-L: learned loss scales e^s L - s (Liu et al. 2021)"),
    info!("stch", LossBased, LOSSES, "smooth Tchebycheff scalarization (Lin et al. 2024)"),
    info!(
        "famo",
        LossBased,
        "losses + losses after the step (one extra forward)",
        "fast adaptive multitask optimization (Liu et al. 2023)"
    ),
    info!(
        "gradnorm",
        GradientBased, PARAM_GRADS, "GradNorm: learned weights equalising gradient norms (Chen et al. 2018)"
    ),
    info!(
        "mgda",
        GradientBased,
        PARAM_GRADS,
        "min-norm point of the gradients' hull, Frank-Wolfe (Sener & Koltun 2018)"
    ),
    info!(
        "mgda_ub",
        GradientBased, REP_GRADS, "MGDA on representation gradients, the upper bound (Sener & Koltun 2018)"
    ),
    info!(
        "pcgrad",
        GradientBased, PARAM_GRADS, "projects away conflicting gradient components (Yu et al. 2020)"
    ),
    info!(
        "graddrop",
        GradientBased, REP_GRADS, "gradient sign dropout on the representation (Chen et al. 2020)"
    ),
    info!(
        "gradvac",
        GradientBased, PARAM_GRADS, "gradient vaccine: adaptive target similarities (Wang et al. 2021)"
    ),
    info!(
        "imtl_g",
        GradientBased, PARAM_GRADS, "IMTL-G: equal projections on all unit gradients (Liu et al. 2021)"
    ),
    info!(
        "imtl",
        GradientBased, PARAM_GRADS, "IMTL: IMTL-L loss scales and IMTL-G together (Liu et al. 2021)"
    ),
    info!("cagrad", GradientBased, PARAM_GRADS, "conflict-averse gradient descent (Liu et al. 2021)"),
    info!("nash_mtl", GradientBased, PARAM_GRADS, "Nash bargaining solution G a = 1/a (Navon et al. 2022)"),
    info!(
        "moco",
        GradientBased, PARAM_GRADS, "MoCo: tracking gradients against gradient bias (Fernando et al. 2023)"
    ),
    info!(
        "aligned_mtl",
        GradientBased, PARAM_GRADS, "aligns gradients to condition number 1 (Senushkin et al. 2023)"
    ),
    info!(
        "aligned_mtl_ub",
        GradientBased, REP_GRADS, "Aligned-MTL on representation gradients (Senushkin et al. 2023)"
    ),
    info!(
        "db_mtl",
        GradientBased, PARAM_GRADS, "dual balancing: log-losses and max-norm gradients (Lin et al. 2023)"
    ),
    info!("excess_mtl", GradientBased, PARAM_GRADS, "weights from estimated excess risks (He et al. 2024)"),
    info!(
        "fairgrad",
        GradientBased, PARAM_GRADS, "alpha-fair allocation, G w = w^(-1/alpha) (Ban & Ji 2024)"
    ),
    info!(
        "modo",
        GradientBased,
        "losses + shared-parameter gradients of 3 batch parts",
        "MoDo: double-sampling MGDA (Chen et al. 2023)"
    ),
    info!(
        "sdmgrad",
        GradientBased,
        "losses + shared-parameter gradients of 3 batch parts",
        "direction-oriented stochastic MGDA (Xiao et al. 2023)"
    ),
    info!(
        "upgrad",
        GradientBased, PARAM_GRADS, "mean of gradients projected onto their dual cone (Quinton & Rey 2024)"
    ),
    info!(
        "dualproj",
        GradientBased, PARAM_GRADS, "mean gradient projected onto the dual cone (Lopez-Paz & Ranzato 2017)"
    ),
    info!(
        "config",
        GradientBased, PARAM_GRADS, "ConFIG: equal-cosine conflict-free direction (Liu et al. 2024)"
    ),
    info!(
        "auto_lambda",
        Bilevel,
        "losses + all-parameter gradients + a validation batch",
        "Auto-Lambda: weights learned through one inner step (Liu et al. 2022)"
    ),
];

/// The registry entry of `name`.
pub fn info(name: &str) -> Option<&'static StrategyInfo> {
    STRATEGIES.iter().find(|s| s.name == name)
}

/// A strategy and its settings, tagged by `name` (defaults: the papers').
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum StrategyConfig {
    Ew(EwConfig),
    Uw(UwConfig),
    Dwa(DwaConfig),
    Rlw(RlwConfig),
    Gls(GlsConfig),
    ScaleInvariant(ScaleInvariantConfig),
    ImtlL(ImtlLConfig),
    Stch(StchConfig),
    Famo(FamoConfig),
    Gradnorm(GradNormConfig),
    Mgda(MgdaConfig),
    /// MGDA in the representation space (its `space` setting is ignored).
    MgdaUb(MgdaConfig),
    Pcgrad(PcGradConfig),
    Graddrop(GradDropConfig),
    Gradvac(GradVacConfig),
    ImtlG(ImtlGConfig),
    Imtl(ImtlConfig),
    Cagrad(CaGradConfig),
    NashMtl(NashMtlConfig),
    Moco(MoCoConfig),
    AlignedMtl(AlignedMtlConfig),
    /// Aligned-MTL in the representation space (its `space` setting is ignored).
    AlignedMtlUb(AlignedMtlConfig),
    DbMtl(DbMtlConfig),
    ExcessMtl(ExcessMtlConfig),
    Fairgrad(FairGradConfig),
    Modo(MoDoConfig),
    Sdmgrad(SdmGradConfig),
    Upgrad(DualConeConfig),
    Dualproj(DualConeConfig),
    Config(ConFigConfig),
    AutoLambda(AutoLambdaConfig),
}

impl Default for StrategyConfig {
    fn default() -> Self {
        StrategyConfig::Ew(EwConfig::default())
    }
}

impl StrategyConfig {
    /// The default settings of strategy `name`.
    pub fn default_for(name: &str) -> Result<Self> {
        use StrategyConfig as S;
        Ok(match name {
            "ew" => S::Ew(Default::default()),
            "uw" => S::Uw(Default::default()),
            "dwa" => S::Dwa(Default::default()),
            "rlw" => S::Rlw(Default::default()),
            "gls" => S::Gls(Default::default()),
            "scale_invariant" => S::ScaleInvariant(Default::default()),
            "imtl_l" => S::ImtlL(Default::default()),
            "stch" => S::Stch(Default::default()),
            "famo" => S::Famo(Default::default()),
            "gradnorm" => S::Gradnorm(Default::default()),
            "mgda" => S::Mgda(Default::default()),
            "mgda_ub" => S::MgdaUb(MgdaConfig::upper_bound()),
            "pcgrad" => S::Pcgrad(Default::default()),
            "graddrop" => S::Graddrop(Default::default()),
            "gradvac" => S::Gradvac(Default::default()),
            "imtl_g" => S::ImtlG(Default::default()),
            "imtl" => S::Imtl(Default::default()),
            "cagrad" => S::Cagrad(Default::default()),
            "nash_mtl" => S::NashMtl(Default::default()),
            "moco" => S::Moco(Default::default()),
            "aligned_mtl" => S::AlignedMtl(Default::default()),
            "aligned_mtl_ub" => S::AlignedMtlUb(AlignedMtlConfig { space: GradientSpace::Representation }),
            "db_mtl" => S::DbMtl(Default::default()),
            "excess_mtl" => S::ExcessMtl(Default::default()),
            "fairgrad" => S::Fairgrad(Default::default()),
            "modo" => S::Modo(Default::default()),
            "sdmgrad" => S::Sdmgrad(Default::default()),
            "upgrad" => S::Upgrad(Default::default()),
            "dualproj" => S::Dualproj(Default::default()),
            "config" => S::Config(Default::default()),
            "auto_lambda" => S::AutoLambda(Default::default()),
            _ => {
                return Err(MtlError::UnknownStrategy {
                    name: name.to_owned(),
                    known: STRATEGIES.iter().map(|s| s.name).collect::<Vec<_>>().join(", "),
                })
            }
        })
    }

    /// Builds the strategy (validating the settings first).
    pub fn build(&self, setup: &Setup<'_>) -> Result<Box<dyn Strategy>> {
        use StrategyConfig as S;
        let t = setup.num_tasks;
        if t == 0 {
            return Err(MtlError::invalid("num_tasks", 0, "must be >= 1"));
        }
        let rep = GradientSpace::Representation;
        Ok(match self {
            S::Ew(_) => Box::new(Ew),
            S::Uw(c) => Box::new(Uw::new(c, setup)?),
            S::Dwa(c) => Box::new(Dwa::new(c, setup)?),
            S::Rlw(c) => Box::new(Rlw::new(c, setup)?),
            S::Gls(_) => Box::new(Gls),
            S::ScaleInvariant(_) => Box::new(ScaleInvariant),
            S::ImtlL(c) => Box::new(ImtlL::new(c, setup)?),
            S::Stch(c) => Box::new(Stch::new(c, setup)?),
            S::Famo(c) => Box::new(Famo::new(c, setup)?),
            S::Gradnorm(c) => Box::new(GradNorm::new(c, setup)?),
            S::Mgda(c) => Box::new(Mgda::new(c)?),
            S::MgdaUb(c) => Box::new(Mgda::new(&MgdaConfig { space: rep, ..c.clone() })?),
            S::Pcgrad(c) => Box::new(PcGrad::new(c, setup)?),
            S::Graddrop(c) => Box::new(GradDrop::new(c, setup)?),
            S::Gradvac(c) => Box::new(GradVac::new(c, setup)?),
            S::ImtlG(c) => Box::new(ImtlG::new(c)?),
            S::Imtl(c) => Box::new(Imtl::new(c, setup)?),
            S::Cagrad(c) => Box::new(CaGrad::new(c)?),
            S::NashMtl(c) => Box::new(NashMtl::new(c, setup)?),
            S::Moco(c) => Box::new(MoCo::new(c, t)?),
            S::AlignedMtl(c) => Box::new(AlignedMtl::new(c)?),
            S::AlignedMtlUb(_) => Box::new(AlignedMtl::new(&AlignedMtlConfig { space: rep })?),
            S::DbMtl(c) => Box::new(DbMtl::new(c)?),
            S::ExcessMtl(c) => Box::new(ExcessMtl::new(c, t)?),
            S::Fairgrad(c) => Box::new(FairGrad::new(c)?),
            S::Modo(c) => Box::new(MoDo::new(c, t)?),
            S::Sdmgrad(c) => Box::new(SdmGrad::new(c, t)?),
            S::Upgrad(c) => Box::new(UpGrad::new(c)?),
            S::Dualproj(c) => Box::new(DualProj::new(c)?),
            S::Config(c) => Box::new(ConFig::new(c)?),
            S::AutoLambda(c) => Box::new(AutoLambda::new(c, t)?),
        })
    }
}

/// Builds strategy `name` with its default settings.
pub fn build(name: &str, setup: &Setup<'_>) -> Result<Box<dyn Strategy>> {
    StrategyConfig::default_for(name)?.build(setup)
}
