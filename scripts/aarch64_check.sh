#!/usr/bin/env bash
# Build the crate for aarch64 and run the NEON kernel self-check under qemu-user
# (recipe: ../shared/notes/aarch64.md). Installs the cross toolchain with apt when missing.
# The check is a single-threaded example (threads hang under qemu-user 7.2), run under
# `timeout` so a stuck emulator can never hold a core.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v qemu-aarch64 >/dev/null || ! command -v aarch64-linux-gnu-gcc >/dev/null \
   || ! dpkg -s libstd-rust-web-dev:arm64 >/dev/null 2>&1; then
  dpkg --add-architecture arm64
  apt-get update
  apt-get install -y rustc-web libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
fi

# Debian's compiler and cargo (rustup's come first on PATH and have no aarch64 std here).
RUSTC=/usr/bin/rustc \
CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
  timeout 1800 /usr/bin/cargo build --release --target aarch64-unknown-linux-gnu --example neon_selfcheck

timeout 300 qemu-aarch64 -L /usr/aarch64-linux-gnu \
  target/aarch64-unknown-linux-gnu/release/examples/neon_selfcheck
