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
//!
//! **Adding a strategy** is its own file plus one line of the table below: the line
//! declares the module, names the strategy (the name configs use, written only there),
//! its configuration type, how it is built and a one-line description; the configuration
//! enum [`StrategyConfig`], the registry [`STRATEGIES`], `default_for`, `build` and
//! `metl list` all come from the table. What the strategy needs and its family are read
//! from the built strategy itself ([`crate::registry::StrategyInfo::needs`]).

use crate::{error::Result, strategy::Setup, Strategy};

/// The one table of strategies; see the module documentation. Each row:
/// `[mod FILE;] "name" => Variant(ConfigType [= default]), |config, setup| construction, "description";`
macro_rules! strategy_table {
    ($(
        $(mod $module:ident;)?
        $name:literal => $variant:ident($config:ty $(= $default:expr)?),
        |$c:ident, $s:ident| $build:expr,
        $description:literal;
    )*) => {
        $($(pub mod $module;)?)*

        /// A strategy and its settings, tagged by `name` (defaults: the papers'), as config
        /// files select them: `{ name = "cagrad", c = 0.4 }`.
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(tag = "name")]
        pub enum StrategyConfig {
            $(
                #[doc = $description]
                #[serde(rename = $name)]
                $variant($config),
            )*
        }

        /// Every strategy, in the order of `metl list`.
        pub const STRATEGIES: &[crate::registry::StrategyInfo] = &[
            $(crate::registry::StrategyInfo { name: $name, description: $description },)*
        ];

        impl StrategyConfig {
            /// The default settings of strategy `name`, if there is one of that name.
            pub(crate) fn defaults(name: &str) -> Option<Self> {
                match name {
                    $($name => Some(StrategyConfig::$variant(strategy_table!(@default $config $(= $default)?))),)*
                    _ => None,
                }
            }

            /// The registry name of the strategy these settings are for.
            pub fn name(&self) -> &'static str {
                match self {
                    $(StrategyConfig::$variant(_) => $name,)*
                }
            }

            /// The strategy, built from these settings (see [`StrategyConfig::build`]).
            pub(crate) fn construct(&self, setup: &Setup<'_>) -> Result<Box<dyn Strategy>> {
                match self {
                    $(StrategyConfig::$variant($c) => {
                        let $s = setup;
                        Ok(Box::new($build))
                    })*
                }
            }
        }
    };
    (@default $config:ty) => { <$config>::default() };
    (@default $config:ty = $default:expr) => { $default };
}

strategy_table! {
    mod ew; "ew" => Ew(ew::EwConfig), |_c, _s| ew::Ew,
        "equal weighting: the plain sum of the losses (weights 1)";
    mod uw; "uw" => Uw(uw::UwConfig), |c, s| uw::Uw::new(c, s)?,
        "uncertainty weighting with learned log-variances (Kendall et al. 2018)";
    mod dwa; "dwa" => Dwa(dwa::DwaConfig), |c, s| dwa::Dwa::new(c, s)?,
        "dynamic weight average of epoch loss ratios (Liu et al. 2019)";
    mod rlw; "rlw" => Rlw(rlw::RlwConfig), |c, s| rlw::Rlw::new(c, s)?,
        "random loss weighting, softmax of N(0, I) (Lin et al. 2022)";
    mod gls; "gls" => Gls(gls::GlsConfig), |_c, _s| gls::Gls,
        "geometric mean of the losses (Chennupati et al. 2019)";
    mod scale_invariant; "scale_invariant" => ScaleInvariant(scale_invariant::ScaleInvariantConfig),
        |_c, _s| scale_invariant::ScaleInvariant,
        "sum of log-losses, scale-invariant (Navon et al. 2022)";
    mod imtl_l; "imtl_l" => ImtlL(imtl_l::ImtlLConfig), |c, s| imtl_l::ImtlL::new(c, s)?,
        "IMTL-L: learned loss scales e^s L - s (Liu et al. 2021)";
    mod stch; "stch" => Stch(stch::StchConfig), |c, s| stch::Stch::new(c, s)?,
        "smooth Tchebycheff scalarization (Lin et al. 2024)";
    mod famo; "famo" => Famo(famo::FamoConfig), |c, s| famo::Famo::new(c, s)?,
        "fast adaptive multitask optimization (Liu et al. 2023)";
    mod gradnorm; "gradnorm" => Gradnorm(gradnorm::GradNormConfig), |c, s| gradnorm::GradNorm::new(c, s)?,
        "GradNorm: learned weights equalising gradient norms (Chen et al. 2018)";
    mod mgda; "mgda" => Mgda(mgda::MgdaConfig), |c, _s| mgda::Mgda::new(c)?,
        "min-norm point of the gradients' hull, Frank-Wolfe (Sener & Koltun 2018)";
    "mgda_ub" => MgdaUb(mgda::MgdaConfig = mgda::MgdaConfig::upper_bound()),
        |c, _s| mgda::Mgda::new(&mgda::MgdaConfig { space: crate::GradientSpace::Representation, ..c.clone() })?,
        "MGDA on representation gradients, the upper bound (Sener & Koltun 2018); its `space` is ignored";
    mod pcgrad; "pcgrad" => Pcgrad(pcgrad::PcGradConfig), |c, s| pcgrad::PcGrad::new(c, s)?,
        "projects away conflicting gradient components (Yu et al. 2020)";
    mod graddrop; "graddrop" => Graddrop(graddrop::GradDropConfig), |c, s| graddrop::GradDrop::new(c, s)?,
        "gradient sign dropout on the representation (Chen et al. 2020)";
    mod gradvac; "gradvac" => Gradvac(gradvac::GradVacConfig), |c, s| gradvac::GradVac::new(c, s)?,
        "gradient vaccine: adaptive target similarities (Wang et al. 2021)";
    mod imtl_g; "imtl_g" => ImtlG(imtl_g::ImtlGConfig), |c, _s| imtl_g::ImtlG::new(c)?,
        "IMTL-G: equal projections on all unit gradients (Liu et al. 2021)";
    mod imtl; "imtl" => Imtl(imtl::ImtlConfig), |c, s| imtl::Imtl::new(c, s)?,
        "IMTL: IMTL-L loss scales and IMTL-G together (Liu et al. 2021)";
    mod cagrad; "cagrad" => Cagrad(cagrad::CaGradConfig), |c, _s| cagrad::CaGrad::new(c)?,
        "conflict-averse gradient descent (Liu et al. 2021)";
    mod nash_mtl; "nash_mtl" => NashMtl(nash_mtl::NashMtlConfig), |c, s| nash_mtl::NashMtl::new(c, s)?,
        "Nash bargaining solution G a = 1/a (Navon et al. 2022)";
    mod moco; "moco" => Moco(moco::MoCoConfig), |c, s| moco::MoCo::new(c, s.num_tasks)?,
        "MoCo: tracking gradients against gradient bias (Fernando et al. 2023)";
    mod aligned_mtl; "aligned_mtl" => AlignedMtl(aligned_mtl::AlignedMtlConfig),
        |c, _s| aligned_mtl::AlignedMtl::new(c)?,
        "aligns gradients to condition number 1 (Senushkin et al. 2023)";
    "aligned_mtl_ub" => AlignedMtlUb(aligned_mtl::AlignedMtlConfig
            = aligned_mtl::AlignedMtlConfig { space: crate::GradientSpace::Representation }),
        |_c, _s| aligned_mtl::AlignedMtl::new(&aligned_mtl::AlignedMtlConfig {
            space: crate::GradientSpace::Representation,
        })?,
        "Aligned-MTL on representation gradients (Senushkin et al. 2023); its `space` is ignored";
    mod db_mtl; "db_mtl" => DbMtl(db_mtl::DbMtlConfig), |c, _s| db_mtl::DbMtl::new(c)?,
        "dual balancing: log-losses and max-norm gradients (Lin et al. 2023)";
    mod excess_mtl; "excess_mtl" => ExcessMtl(excess_mtl::ExcessMtlConfig),
        |c, s| excess_mtl::ExcessMtl::new(c, s.num_tasks)?,
        "weights from estimated excess risks (He et al. 2024)";
    mod fairgrad; "fairgrad" => Fairgrad(fairgrad::FairGradConfig), |c, _s| fairgrad::FairGrad::new(c)?,
        "alpha-fair allocation, G w = w^(-1/alpha) (Ban & Ji 2024)";
    mod modo; "modo" => Modo(modo::MoDoConfig), |c, s| modo::MoDo::new(c, s.num_tasks)?,
        "MoDo: double-sampling MGDA (Chen et al. 2023)";
    mod sdmgrad; "sdmgrad" => Sdmgrad(sdmgrad::SdmGradConfig), |c, s| sdmgrad::SdmGrad::new(c, s.num_tasks)?,
        "direction-oriented stochastic MGDA (Xiao et al. 2023)";
    mod upgrad; "upgrad" => Upgrad(upgrad::DualConeConfig), |c, _s| upgrad::UpGrad::new(c)?,
        "mean of gradients projected onto their dual cone (Quinton & Rey 2024)";
    mod dualproj; "dualproj" => Dualproj(upgrad::DualConeConfig), |c, _s| dualproj::DualProj::new(c)?,
        "mean gradient projected onto the dual cone (Lopez-Paz & Ranzato 2017)";
    mod config; "config" => Config(config::ConFigConfig), |c, _s| config::ConFig::new(c)?,
        "ConFIG: equal-cosine conflict-free direction (Liu et al. 2024)";
    mod auto_lambda; "auto_lambda" => AutoLambda(auto_lambda::AutoLambdaConfig),
        |c, s| auto_lambda::AutoLambda::new(c, s.num_tasks)?,
        "Auto-Lambda: weights learned through one inner step (Liu et al. 2022)";
}

pub mod state;
