//! Erasure-coding throughput over one 4 MiB object: encode (all parity), reconstruct with
//! P data strips lost, split and join, in GB/s of object data, with a same-run memcpy of
//! the object as reference; plus the latency of reconstructing a single block (a degraded
//! small read).
//!
//! `cargo run --release -p sd-ec --example ec_speed [ITERATIONS]` (default 100).

use std::error::Error;
use std::hint::black_box;
use std::time::{Duration, Instant};

use sd_ec::{Ec, Geometry};

const OBJECT_SIZE: u64 = 4 << 20;

/// Average time of `iterations` runs of `f`, after one warm-up run.
fn time<E>(iterations: u32, mut f: impl FnMut() -> Result<(), E>) -> Result<Duration, E> {
    f()?;
    let start = Instant::now();
    for _ in 0..iterations {
        f()?;
    }
    Ok(start.elapsed() / iterations)
}

/// Object bytes per second, in GB/s.
fn gbps(per_op: Duration) -> f64 {
    // 4 MiB is exactly representable as f64.
    let bytes = f64::from(u32::try_from(OBJECT_SIZE).unwrap_or(u32::MAX));
    bytes / per_op.as_secs_f64() / 1e9
}

/// Deterministic pseudo-random object data.
fn object() -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..OBJECT_SIZE)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

fn main() -> Result<(), Box<dyn Error>> {
    let iterations: u32 = match std::env::args().nth(1) {
        Some(arg) => arg.parse()?,
        None => 100,
    }
    .max(1);
    let data = object();

    let memcpy = time(iterations, || {
        let copy = black_box(&data).clone();
        black_box(copy);
        Ok::<(), Box<dyn Error>>(())
    })?;
    let reference = gbps(memcpy);

    println!(
        "ec_speed: {} MiB object, {iterations} iterations",
        OBJECT_SIZE >> 20
    );
    println!("memcpy (clone of the object): {reference:.2} GB/s = 1.00x");
    println!();
    println!(
        "{:<6} {:>8} {:>8} {:>8} {:>12} {:>8} {:>8} {:>8} {:>14}",
        "code",
        "encode",
        "into",
        "(fresh)",
        "reconstruct",
        "(fresh)",
        "split",
        "join",
        "1-block rec."
    );

    for (d, p) in [(2, 1), (4, 2), (8, 3), (16, 4)] {
        let ec = Ec::new(d, p)?;
        let geometry = Geometry::new(ec, OBJECT_SIZE)?;
        let whole = geometry.whole();
        let data_strips = geometry.split(whole, &data)?;
        let parity = geometry.encode(&data_strips)?;

        let split = time(iterations, || {
            black_box(geometry.split(whole, black_box(&data))?);
            Ok::<(), sd_ec::EcError>(())
        })?;
        let join = time(iterations, || {
            black_box(geometry.join(whole, black_box(&data_strips))?);
            Ok::<(), sd_ec::EcError>(())
        })?;

        let mut codec = geometry.codec();
        let encode = time(iterations, || {
            black_box(codec.encode(black_box(&data_strips))?);
            Ok::<(), sd_ec::EcError>(())
        })?;
        let mut parity_out = parity.clone();
        let encode_into = time(iterations, || {
            codec.encode_into(black_box(&data_strips), &mut parity_out)?;
            black_box(&parity_out);
            Ok::<(), sd_ec::EcError>(())
        })?;
        let encode_fresh = time(iterations, || {
            black_box(geometry.encode(black_box(&data_strips))?);
            Ok::<(), sd_ec::EcError>(())
        })?;

        // Lose the first P data strips (all of them but D - P survive).
        let lost = usize::from(ec.parity()).min(usize::from(ec.data()));
        let mut strips: Vec<Option<Vec<u8>>> = data_strips
            .iter()
            .chain(&parity)
            .enumerate()
            .map(|(i, s)| (i >= lost).then(|| s.clone()))
            .collect();
        let mut reconstruct_with = |fresh: bool| {
            time(iterations, || {
                if fresh {
                    geometry.reconstruct(&mut strips)?;
                } else {
                    codec.reconstruct(&mut strips)?;
                }
                for slot in strips.iter_mut().take(lost) {
                    black_box(slot.take());
                }
                Ok::<(), sd_ec::EcError>(())
            })
        };
        let reconstruct = reconstruct_with(false)?;
        let reconstruct_fresh = reconstruct_with(true)?;

        // One block of every strip, the same P data strips lost.
        let block = usize::try_from(geometry.block_strip_bytes())?;
        let mut small: Vec<Option<Vec<u8>>> = strips
            .iter()
            .map(|s| s.as_ref().and_then(|s| s.get(..block)).map(<[u8]>::to_vec))
            .collect();
        let one_block = time(iterations, || {
            codec.reconstruct(&mut small)?;
            for slot in small.iter_mut().take(lost) {
                black_box(slot.take());
            }
            Ok::<(), sd_ec::EcError>(())
        })?;

        let rates = [
            encode,
            encode_into,
            encode_fresh,
            reconstruct,
            reconstruct_fresh,
            split,
            join,
        ]
        .map(gbps);
        let [e, ei, ef, r, rf, s, j] = rates;
        println!(
            "{:<6} {e:>8.2} {ei:>8.2} {ef:>8.2} {r:>12.2} {rf:>8.2} {s:>8.2} {j:>8.2} {:>11.0} us",
            ec.to_string(),
            one_block.as_secs_f64() * 1e6,
        );
        let [e, ei, ef, r, rf, s, j] = rates.map(|x| x / reference);
        println!(
            "{:<6} {e:>7.2}x {ei:>7.2}x {ef:>7.2}x {r:>11.2}x {rf:>7.2}x {s:>7.2}x {j:>7.2}x",
            "",
        );
    }
    println!();
    println!("GB/s = object data bytes per second (1e9); x = ratio to memcpy.");
    println!(
        "encode/reconstruct: a reused Codec; into: Codec::encode_into reusing parity buffers;"
    );
    println!("(fresh): Geometry::encode/reconstruct, a new Codec per call;");
    println!("1-block rec.: time to reconstruct one block of each strip with P data strips lost.");
    Ok(())
}
