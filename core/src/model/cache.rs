//! The key/value cache of incremental decoding, passed into `forward` by the caller (never global).
//!
//! Each decoder layer writes the keys and values of the new positions (after RoPE) into its
//! [`LayerCache`]; the forward pass attends to everything cached plus itself. A cache belongs to one
//! batch: its rows are the batch's sequences and its [`Padding`](super::Padding) is the batch's, so
//! the caller passes the same padding with every call.
//!
//! The buffers are preallocated to a capacity (grown by doubling when exceeded) and written in
//! place, and attention reads them whole: the slots not written yet are zeros that the causal mask
//! hides (they lie in every query's future). On CPU backends a concatenation per step, or a view
//! of the filled part, would copy the whole cache once per layer and token.

use burn::tensor::{Int, Tensor};

/// Keys and values of one decoder layer: keys transposed, `[batch, kv_heads, head_dim, capacity]`,
/// values `[batch, kv_heads, capacity, head_dim]` (the layouts the two attention matmuls read);
/// positions `0..len` hold data.
#[derive(Clone, Debug, Default)]
pub struct LayerCache {
    kv: Option<(Tensor<4>, Tensor<4>)>,
    len: usize,
    capacity: usize,
}

impl LayerCache {
    /// Writes the new keys and values (each `[batch, kv_heads, new, head_dim]`) after the cached ones
    /// and returns the whole buffers, `capacity` wide: keys `[batch, kv_heads, head_dim, capacity]`,
    /// values `[batch, kv_heads, capacity, head_dim]`.
    pub fn append(&mut self, k: Tensor<4>, v: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let [b, kv, s, d] = k.dims();
        let end = self.len + s;
        let capacity = self.capacity.max(end);
        let (k_buf, v_buf) = match self.kv.take() {
            Some((k_buf, v_buf)) if k_buf.dims()[3] >= capacity => (k_buf, v_buf),
            old => {
                // First use or growth: fresh zero buffers, the cached part copied over.
                let device = k.device();
                let mut k_new = Tensor::<4>::zeros([b, kv, d, capacity], &device);
                let mut v_new = Tensor::<4>::zeros([b, kv, capacity, d], &device);
                if let Some((k_old, v_old)) = old {
                    let n = self.len;
                    k_new = k_new.slice_assign([0..b, 0..kv, 0..d, 0..n], k_old.narrow(3, 0, n));
                    v_new = v_new.slice_assign([0..b, 0..kv, 0..n, 0..d], v_old.narrow(2, 0, n));
                }
                (k_new, v_new)
            }
        };
        let (k_buf, v_buf) = crate::ops::write_kv(k_buf, v_buf, k, v, self.len);
        self.len = end;
        self.capacity = k_buf.dims()[3];
        self.kv = Some((k_buf.clone(), v_buf.clone()));
        (k_buf, v_buf)
    }

    /// Cached positions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Width of the buffers the next [`LayerCache::append`] returns (at least the filled length).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Keeps only the given batch rows (e.g. the sequences still generating).
    pub fn retain_rows(&mut self, rows: &Tensor<1, Int>) {
        if let Some((k, v)) = self.kv.take() {
            self.kv = Some((k.select(0, rows.clone()), v.select(0, rows.clone())));
        }
    }
}

/// The caches of every decoder layer of one batch.
#[derive(Clone, Debug)]
pub struct KvCache {
    layers: Vec<LayerCache>,
}

impl KvCache {
    /// An empty cache for a model of `num_layers` decoder layers, grown as needed.
    pub fn new(num_layers: usize) -> Self {
        Self::with_capacity(num_layers, 0)
    }

    /// An empty cache whose buffers hold `capacity` positions before they grow: pass the longest
    /// sequence (prompt + new tokens) to avoid any regrowth.
    pub fn with_capacity(num_layers: usize, capacity: usize) -> Self {
        Self {
            layers: vec![
                LayerCache {
                    kv: None,
                    len: 0,
                    capacity,
                };
                num_layers
            ],
        }
    }

    /// Positions cached so far (the same in every layer).
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, LayerCache::len)
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decoder layers.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Makes room for `new` more positions (doubling the capacity when it runs out) and returns the
    /// width of the buffers attention will read: the key axis of the mask.
    pub fn reserve(&mut self, new: usize) -> usize {
        let need = self.len() + new;
        let capacity = self.layers.first().map_or(need, LayerCache::capacity);
        let capacity = if need > capacity {
            need.max(2 * capacity)
        } else {
            capacity
        };
        for layer in &mut self.layers {
            layer.capacity = capacity;
        }
        capacity
    }

    /// The cache of layer `i`.
    pub fn layer_mut(&mut self, i: usize) -> &mut LayerCache {
        &mut self.layers[i]
    }

    /// Keeps only the given batch rows in every layer.
    pub fn retain_rows(&mut self, rows: &Tensor<1, Int>) {
        for layer in &mut self.layers {
            layer.retain_rows(rows);
        }
    }
}

#[cfg(test)]
#[allow(deprecated)] // Device::ndarray: deprecated upstream, still the CPU reference backend.
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn append_writes_in_place_and_grows() {
        let device = Device::ndarray();
        let mut cache = KvCache::with_capacity(2, 6);
        assert!(cache.is_empty());
        let t = |v: f32, n: usize| Tensor::<4>::full([2, 1, n, 3], v, &device);
        assert_eq!(cache.reserve(4), 6);
        cache.layer_mut(0).append(t(1.0, 4), t(2.0, 4));
        assert_eq!(cache.reserve(1), 6);
        let (k, v) = cache.layer_mut(0).append(t(3.0, 1), t(4.0, 1));
        assert_eq!((k.dims(), v.dims()), ([2, 1, 3, 6], [2, 1, 6, 3]));
        assert_eq!(cache.len(), 5);
        // Row 0, head dim 0: four keys, the new one, an unwritten zero slot.
        let kd = k.into_data().to_vec::<f32>().unwrap();
        assert_eq!(&kd[..6], &[1.0, 1.0, 1.0, 1.0, 3.0, 0.0]);
        // Growth doubles the capacity and keeps the cached part.
        assert_eq!(cache.reserve(3), 12);
        let (k, v) = cache.layer_mut(0).append(t(5.0, 3), t(6.0, 3));
        assert_eq!(k.dims()[3], 12);
        let kd = k.into_data().to_vec::<f32>().unwrap();
        assert_eq!(&kd[..12], &[1., 1., 1., 1., 3., 5., 5., 5., 0., 0., 0., 0.]);
        let vd = v.into_data().to_vec::<f32>().unwrap();
        assert_eq!(vd[4 * 3], 4.0);
        let rows = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64], [1]), &device);
        cache.retain_rows(&rows);
        assert_eq!(cache.len(), 8);
    }
}
