//! Training `llama`-family models with burn's autodiff on the CPU: random initialisation written as
//! an HF checkpoint and loaded by `analog-core` (so the trained model *is* the runtime's model),
//! next-token cross-entropy, distillation from a teacher's softened logits, AdamW with warm-up and
//! cosine decay, and export back to `model.safetensors`.

use std::collections::BTreeMap;

use analog_core::{Device, Hooks, Model, WeightFiles, read_f32};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Int, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// The shape of a lab model (always `llama`, untied head, GQA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    pub vocab_size: usize,
    pub d_model: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub d_mlp: usize,
    pub context_length: usize,
}

impl Shape {
    /// Parameter count (embedding and head counted separately: the head is untied).
    pub fn n_params(&self) -> usize {
        let head_dim = self.d_model / self.n_heads;
        let attn = self.d_model * (self.n_heads * head_dim) * 2 + self.d_model * (self.n_kv_heads * head_dim) * 2;
        let mlp = 3 * self.d_model * self.d_mlp;
        2 * self.vocab_size * self.d_model + self.n_layers * (attn + mlp + 2 * self.d_model) + self.d_model
    }

    /// `config.json` in the transformers `LlamaConfig` format.
    pub fn config_json(&self, eos: u32) -> Result<String> {
        let config = serde_json::json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": self.vocab_size,
            "hidden_size": self.d_model,
            "intermediate_size": self.d_mlp,
            "num_hidden_layers": self.n_layers,
            "num_attention_heads": self.n_heads,
            "num_key_value_heads": self.n_kv_heads,
            "max_position_embeddings": self.context_length,
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0,
            "hidden_act": "silu",
            "tie_word_embeddings": false,
            "attention_bias": false,
            "mlp_bias": false,
            "bos_token_id": eos,
            "eos_token_id": eos,
            "torch_dtype": "float32",
        });
        crate::pipeline::pretty_json(&config, "config.json")
    }

    /// A seeded random initialisation as `model.safetensors` bytes: N(0, 0.02) weights, output
    /// projections scaled by 1/√(2·layers) (GPT-2), norms at 1.
    pub fn init_safetensors(&self, seed: u64) -> Result<Vec<u8>> {
        let mut rng = StdRng::seed_from_u64(seed);
        let residual_scale = 1.0 / (2.0 * self.n_layers as f32).sqrt();
        let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = analog_core::ModelConfig::from_hf_json(self.config_json(0)?.as_bytes())?
            .hf_tensors()
            .into_iter()
            .map(|(name, shape)| {
                let n: usize = shape.iter().product();
                let data = if name.ends_with("norm.weight") {
                    vec![1.0; n]
                } else {
                    let std = if name.ends_with("o_proj.weight") || name.ends_with("down_proj.weight") { 0.02 * residual_scale } else { 0.02 };
                    (0..n).map(|_| normal(&mut rng) * std).collect()
                };
                (name, shape, data)
            })
            .collect();
        safetensors_bytes(&tensors)
    }
}

/// A standard normal sample (Box–Muller).
pub fn normal(rng: &mut StdRng) -> f32 {
    let (u1, u2): (f32, f32) = (rng.random::<f32>().max(1e-12), rng.random());
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
}

/// Serialises f32 tensors as safetensors.
pub fn safetensors_bytes(tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Result<Vec<u8>> {
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|(_, _, d)| d.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), data)| Ok((name.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)?)))
        .collect::<Result<_>>()?;
    Ok(safetensors::serialize(views, None)?)
}

/// The trained parameters of `model` under their HF names, as `model.safetensors` bytes.
pub fn export_safetensors(model: &Model) -> Result<Vec<u8>> {
    let read2 = |t: Tensor<2>, transpose: bool| -> analog_core::Result<(Vec<usize>, Vec<f32>)> {
        let t = if transpose { t.transpose() } else { t };
        let dims = t.dims().to_vec();
        Ok((dims, pollster::block_on(read_f32(t))?))
    };
    let read1 = |t: Tensor<1>| -> analog_core::Result<(Vec<usize>, Vec<f32>)> { Ok((t.dims().to_vec(), pollster::block_on(read_f32(t))?)) };
    let mut out: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut push = |name: String, (shape, data): (Vec<usize>, Vec<f32>)| out.push((name, shape, data));
    push("model.embed_tokens.weight".into(), read2(model.embed.val(), false)?);
    for (l, b) in model.blocks.iter().enumerate() {
        let p = format!("model.layers.{l}");
        push(format!("{p}.input_layernorm.weight"), read1(b.ln1.weight.val())?);
        push(format!("{p}.self_attn.q_proj.weight"), read2(b.attn.q.weight.val(), true)?);
        push(format!("{p}.self_attn.k_proj.weight"), read2(b.attn.k.weight.val(), true)?);
        push(format!("{p}.self_attn.v_proj.weight"), read2(b.attn.v.weight.val(), true)?);
        push(format!("{p}.self_attn.o_proj.weight"), read2(b.attn.o.weight.val(), true)?);
        push(format!("{p}.post_attention_layernorm.weight"), read1(b.ln2.weight.val())?);
        if let Some(gate) = &b.mlp.gate {
            push(format!("{p}.mlp.gate_proj.weight"), read2(gate.weight.val(), true)?);
        }
        push(format!("{p}.mlp.up_proj.weight"), read2(b.mlp.up.weight.val(), true)?);
        push(format!("{p}.mlp.down_proj.weight"), read2(b.mlp.down.weight.val(), true)?);
    }
    push("model.norm.weight".into(), read1(model.ln_final.weight.val())?);
    push("lm_head.weight".into(), read2(model.unembed.val(), true)?);
    safetensors_bytes(&out)
}

/// Loads `config.json` + weights onto `device` (for training: an autodiff device).
pub fn load(config_json: &str, weights: &[u8], device: &Device) -> analog_core::Result<Model> {
    Model::from_bytes(config_json.as_bytes(), &WeightFiles::Single(weights), device)
}

/// Windows of `len + 1` tokens drawn from the packed token stream.
pub fn batch(stream: &[u32], rows: usize, len: usize, rng: &mut StdRng) -> Vec<Vec<u32>> {
    (0..rows)
        .map(|_| {
            let start = rng.random_range(0..stream.len().saturating_sub(len + 1).max(1));
            stream[start..(start + len + 1).min(stream.len())].to_vec()
        })
        .collect()
}

fn int_tensor(rows: &[Vec<u32>], range: std::ops::Range<usize>, device: &Device) -> Tensor<2, Int> {
    let width = range.len();
    let flat: Vec<i32> = rows.iter().flat_map(|r| r[range.clone()].iter().map(|&t| t as i32)).collect();
    Tensor::from_data(TensorData::new(flat, [rows.len(), width]), device)
}

/// Logits `[batch, len, vocab]` for the first `len` tokens of each row.
pub fn logits(model: &Model, rows: &[Vec<u32>]) -> analog_core::Result<Tensor<3>> {
    let len = rows.iter().map(Vec::len).min().unwrap_or(1) - 1;
    let tokens = int_tensor(rows, 0..len, &model.device());
    let hidden = model.forward_hidden(tokens, &mut model.new_cache(), &mut Hooks::new())?;
    Ok(model.unembed(hidden))
}

/// Mean next-token cross-entropy (nats) of `logits` against tokens 1..=len of each row.
pub fn cross_entropy(logits: Tensor<3>, rows: &[Vec<u32>]) -> Tensor<1> {
    let [_, len, _] = logits.dims();
    let device = logits.device();
    let targets = int_tensor(rows, 1..len + 1, &device).unsqueeze_dim::<3>(2);
    let picked = log_softmax(logits, 2).gather(2, targets);
    picked.mean().neg()
}

/// KL(teacher ‖ student) of the temperature-softened distributions, times T² (Hinton et al.).
pub fn distillation_kl(student: Tensor<3>, teacher: Tensor<3>, temperature: f32) -> Tensor<1> {
    let [b, t, _] = student.dims();
    let teacher_log = log_softmax(teacher / temperature, 2);
    let student_log = log_softmax(student / temperature, 2);
    let kl = (softmax(teacher_log.clone(), 2) * (teacher_log - student_log)).sum();
    kl / (b * t) as f32 * temperature * temperature
}

/// Optimisation settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Schedule {
    pub steps: usize,
    pub batch: usize,
    pub seq_len: usize,
    pub lr: f64,
    pub warmup: usize,
    pub weight_decay: f32,
    pub seed: u64,
}

impl Schedule {
    /// Linear warm-up, then cosine decay to 10% of `lr`.
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.lr * (step + 1) as f64 / self.warmup as f64;
        }
        let progress = (step - self.warmup) as f64 / (self.steps.saturating_sub(self.warmup)).max(1) as f64;
        self.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos()))
    }

    pub fn optimizer(&self) -> ModuleOptimizer {
        AdamWConfig::new().with_weight_decay(self.weight_decay).with_grad_clipping(Some(burn::grad_clipping::GradientClippingConfig::Norm(1.0))).init()
    }
}

/// One optimisation step on `loss`; returns the updated model.
pub fn step(model: Model, optimizer: &mut ModuleOptimizer, loss: Tensor<1>, lr: f64) -> Model {
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    optimizer.step(lr, model, grads)
}

/// Loss curve entries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogRow {
    pub step: usize,
    pub tokens: u64,
    pub loss: f32,
    pub lr: f64,
    pub seconds: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_out_loss: Option<f32>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parts: BTreeMap<String, f32>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const TINY: Shape = Shape { vocab_size: 32, d_model: 16, n_layers: 1, n_heads: 2, n_kv_heads: 1, d_mlp: 32, context_length: 32 };

    fn tiny_stream() -> Vec<u32> {
        // A learnable pattern: 0 1 2 ... 31 repeated.
        (0..2000).map(|i| (i % 32) as u32).collect()
    }

    fn schedule(steps: usize) -> Schedule {
        Schedule { steps, batch: 4, seq_len: 16, lr: 1e-2, warmup: 2, weight_decay: 0.0, seed: 0 }
    }

    fn mean_loss(model: &Model, rows: &[Vec<u32>]) -> f32 {
        pollster::block_on(read_f32(cross_entropy(logits(model, rows).unwrap(), rows))).unwrap()[0]
    }

    #[test]
    fn a_few_steps_reduce_the_loss_and_export_round_trips() {
        let device = analog_core::device::cpu().autodiff();
        let config = TINY.config_json(0).unwrap();
        let mut model = load(&config, &TINY.init_safetensors(0).unwrap(), &device).unwrap();
        assert_eq!(model.n_params, TINY.n_params());
        let sched = schedule(30);
        let mut optimizer = sched.optimizer();
        let mut rng = StdRng::seed_from_u64(0);
        let held = batch(&tiny_stream(), 8, 16, &mut StdRng::seed_from_u64(99));
        let before = mean_loss(&model, &held);
        for s in 0..sched.steps {
            let rows = batch(&tiny_stream(), sched.batch, sched.seq_len, &mut rng);
            let loss = cross_entropy(logits(&model, &rows).unwrap(), &rows);
            model = step(model, &mut optimizer, loss, sched.lr_at(s));
        }
        let after = mean_loss(&model, &held);
        assert!(after < before * 0.5, "loss {before} → {after}");
        // The exported checkpoint is the same model.
        let exported = export_safetensors(&model).unwrap();
        let reloaded = load(&config, &exported, &analog_core::device::cpu()).unwrap();
        assert!((mean_loss(&reloaded, &held) - after).abs() < 1e-4);
    }

    #[test]
    fn distillation_reduces_kl_to_a_fixed_teacher() {
        let device = analog_core::device::cpu().autodiff();
        let config = TINY.config_json(0).unwrap();
        let teacher = load(&config, &TINY.init_safetensors(7).unwrap(), &analog_core::device::cpu()).unwrap();
        let mut student = load(&config, &TINY.init_safetensors(8).unwrap(), &device).unwrap();
        let rows = batch(&tiny_stream(), 4, 16, &mut StdRng::seed_from_u64(1));
        let kl = |student: &Model| {
            let t = Tensor::<3>::from_data(logits(&teacher, &rows).unwrap().into_data(), &student.device());
            pollster::block_on(read_f32(distillation_kl(logits(student, &rows).unwrap(), t, 2.0))).unwrap()[0]
        };
        let before = kl(&student);
        let sched = schedule(25);
        let mut optimizer = sched.optimizer();
        for s in 0..sched.steps {
            let t = Tensor::<3>::from_data(logits(&teacher, &rows).unwrap().into_data(), &device);
            let loss = distillation_kl(logits(&student, &rows).unwrap(), t, 2.0);
            student = step(student, &mut optimizer, loss, sched.lr_at(s));
        }
        let after = kl(&student);
        assert!(after < before * 0.5, "KL {before} → {after}");
    }
}
