//! FP8 e4m3 weights with 128x128 block scales, the format DeepSeek-V3 ships: a stored byte
//! `q` at row i, column j stands for `e4m3(q) * scale_inv[i / 128][j / 128]`.

/// Rows and columns each scale covers.
pub const BLOCK: usize = 128;

/// Blocks per column and per row of a `rows x cols` matrix.
pub fn block_grid(rows: usize, cols: usize) -> (usize, usize) {
    (rows.div_ceil(BLOCK), cols.div_ceil(BLOCK))
}

/// The value of an e4m3 ("fn": no infinities, only 0x7f/0xff are NaN) byte: 1 sign bit,
/// 4 exponent bits with bias 7, 3 mantissa bits.
pub fn e4m3_to_f32(b: u8) -> f32 {
    let sign = if b & 0x80 != 0 { -1.0 } else { 1.0 };
    let exp = ((b >> 3) & 0x0f) as i32;
    let man = (b & 0x07) as f32;
    if exp == 0x0f && b & 0x07 == 0x07 {
        return f32::NAN;
    }
    let magnitude = if exp == 0 {
        man / 8.0 * 2f32.powi(-6)
    } else {
        (1.0 + man / 8.0) * 2f32.powi(exp - 7)
    };
    sign * magnitude
}

/// Dequantizes `data` (`rows x cols` e4m3 bytes, row-major) with `scale` (the block grid,
/// row-major) to f32.
pub fn dequantize_blocks(data: &[u8], rows: usize, cols: usize, scale: &[f32]) -> Vec<f32> {
    let table: Vec<f32> = (0..=255u8).map(e4m3_to_f32).collect();
    let (_, bc) = block_grid(rows, cols);
    let mut out = Vec::with_capacity(rows * cols);
    for (i, row) in data.chunks_exact(cols).take(rows).enumerate() {
        let srow = &scale[(i / BLOCK) * bc..(i / BLOCK + 1) * bc];
        out.extend(
            row.iter()
                .enumerate()
                .map(|(j, &q)| table[q as usize] * srow[j / BLOCK]),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values from the OCP FP8 specification's e4m3 table (and torch.float8_e4m3fn).
    #[test]
    fn e4m3_values() {
        assert_eq!(e4m3_to_f32(0x00), 0.0);
        assert_eq!(e4m3_to_f32(0x38), 1.0);
        assert_eq!(e4m3_to_f32(0xb8), -1.0);
        assert_eq!(e4m3_to_f32(0x7e), 448.0); // largest finite
        assert_eq!(e4m3_to_f32(0x01), 2f32.powi(-9)); // smallest subnormal
        assert_eq!(e4m3_to_f32(0x08), 2f32.powi(-6)); // smallest normal
        assert_eq!(e4m3_to_f32(0x3c), 1.5);
        assert!(e4m3_to_f32(0x7f).is_nan() && e4m3_to_f32(0xff).is_nan());
    }

    /// Each 128x128 block takes its own scale, including the ragged last blocks.
    #[test]
    fn block_scales_apply_per_block() {
        let (rows, cols) = (130, 129);
        let data = vec![0x38u8; rows * cols]; // all 1.0
        let grid = block_grid(rows, cols);
        assert_eq!(grid, (2, 2));
        let scale = [1.0, 2.0, 3.0, 4.0];
        let w = dequantize_blocks(&data, rows, cols, &scale);
        assert_eq!(w[0], 1.0);
        assert_eq!(w[128], 2.0);
        assert_eq!(w[128 * cols], 3.0);
        assert_eq!(w[129 * cols + 128], 4.0);
    }
}
