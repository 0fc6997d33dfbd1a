//! The model's parameters by their HF names (`model.layers.3.input_layernorm.weight`), for AQN
//! (docs/spec.md section 4: noise on named RMSNorm or linear weights), audits and the loader.
//!
//! Burn's module traversal reports each parameter's module path (`model.layers.3.mlp.up_proj.weight`);
//! [`super::hf_names::hf_name`] turns it into the checkpoint name (the path itself, but for the tied
//! head and the LoRA factors).

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::Tensor;

use super::hf_names::hf_name;
use crate::model::Qwen2ForCausalLM;

/// Reads parameters with their HF names.
pub trait NamedParamVisitor {
    /// Called once per float parameter.
    fn visit<const D: usize>(&mut self, name: &str, param: &Param<Tensor<D>>);
}

/// Replaces parameters, given their HF names.
pub trait NamedParamMapper {
    /// Called once per float parameter; returns its replacement (keep `param.id` so optimizer state
    /// stays attached, e.g. with `param.map(|w| ...)`).
    fn map<const D: usize>(&mut self, name: &str, param: Param<Tensor<D>>) -> Param<Tensor<D>>;
}

/// The module path of the parameter being visited, and the HF name it maps to.
struct PathTracker {
    path: Vec<String>,
    tied: bool,
}

impl PathTracker {
    fn enter(&mut self, name: &str) {
        self.path.push(name.to_string());
    }

    fn exit(&mut self) {
        self.path.pop();
    }

    fn hf_name(&self) -> String {
        let path = self.path.join(".");
        // Every parameter of the model has an HF name; a miss is a bug in this crate.
        hf_name(&path, self.tied)
            .unwrap_or_else(|| panic!("module path `{path}` is no parameter of Qwen2 (hf_names)"))
    }
}

struct Visit<'a, V> {
    tracker: PathTracker,
    inner: &'a mut V,
}

impl<V: NamedParamVisitor> ModuleVisitor for Visit<'_, V> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.tracker.enter(name);
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.tracker.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let name = self.tracker.hf_name();
        self.inner.visit(&name, param);
    }
}

struct Map<'a, M> {
    tracker: PathTracker,
    inner: &'a mut M,
}

impl<M: NamedParamMapper> ModuleMapper for Map<'_, M> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.tracker.enter(name);
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.tracker.exit();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let name = self.tracker.hf_name();
        self.inner.map(&name, param)
    }
}

impl Qwen2ForCausalLM {
    /// Visits every float parameter with its HF name. With tied embeddings the shared matrix is
    /// visited once, as `model.embed_tokens.weight` (HF's name for it).
    pub fn visit_named<V: NamedParamVisitor>(&self, visitor: &mut V) {
        let tied = self.config().tie_word_embeddings;
        self.visit(&mut Visit {
            tracker: PathTracker {
                path: Vec::new(),
                tied,
            },
            inner: visitor,
        });
    }

    /// Maps every float parameter with its HF name.
    pub fn map_named<M: NamedParamMapper>(self, mapper: &mut M) -> Self {
        let tied = self.config().tie_word_embeddings;
        self.map(&mut Map {
            tracker: PathTracker {
                path: Vec::new(),
                tied,
            },
            inner: mapper,
        })
    }

    /// Gives every parameter an id derived from its HF name (FNV-1a). Optimizer state is keyed by
    /// parameter id, and a resumed run rebuilds the model and reloads its adapter or weights,
    /// which would otherwise draw fresh random ids and silently detach the saved Adam moments.
    pub fn with_name_param_ids(self) -> Self {
        struct Ids;
        impl NamedParamMapper for Ids {
            fn map<const D: usize>(
                &mut self,
                name: &str,
                param: Param<Tensor<D>>,
            ) -> Param<Tensor<D>> {
                let (_, value, mapper) = param.consume();
                Param::from_mapped_value(ParamId::from(fnv1a(name)), value, mapper)
            }
        }
        self.map_named(&mut Ids)
    }

    /// The HF names and shapes of every parameter, in module order.
    pub fn named_shapes(&self) -> Vec<(String, Vec<usize>)> {
        struct Names(Vec<(String, Vec<usize>)>);
        impl NamedParamVisitor for Names {
            fn visit<const D: usize>(&mut self, name: &str, param: &Param<Tensor<D>>) {
                self.0.push((name.to_string(), param.lazy_shape().to_vec()));
            }
        }
        let mut names = Names(Vec::new());
        self.visit_named(&mut names);
        names.0
    }
}

/// 64-bit FNV-1a of a name.
fn fnv1a(name: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    name.bytes()
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}
