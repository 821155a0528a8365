#!/usr/bin/env python3
"""Prints the version of the wasm-bindgen crate that Cargo.lock pins (the wasm-bindgen-cli
that builds the page and runs tests/web.rs must be the same version)."""
import pathlib
import sys
import tomllib

lock = tomllib.loads((pathlib.Path(__file__).resolve().parent.parent / "Cargo.lock").read_text())
versions = {p["version"] for p in lock["package"] if p["name"] == "wasm-bindgen"}
if len(versions) != 1:
    sys.exit(f"Cargo.lock pins wasm-bindgen {sorted(versions) or 'nowhere'}: expected exactly one version")
print(versions.pop())
