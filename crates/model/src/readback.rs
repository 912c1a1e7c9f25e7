//! Reading a tensor back to the host as `f32`s, asynchronously: WebGPU in the browser cannot
//! block on a read, so every read that may run in the page goes through here.

use burn::prelude::*;

use crate::ModelError;

/// The values of `tensor`, flattened in row-major order and converted to `f32`.
pub async fn read_f32<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>, ModelError> {
    let backend = |e: &dyn std::fmt::Debug| ModelError::Backend(format!("{e:?}"));
    let data = tensor.into_data_async().await.map_err(|e| backend(&e))?;
    data.convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| backend(&e))
}
