//! `--proto FILE|DIR`: protobuf schemas for typed gRPC messages, compiled at run time.
//!
//! A `.proto` file is compiled with its folder as the import root; a folder has every
//! `.proto` under it compiled with the folder as the root; any other file is read as a
//! binary `FileDescriptorSet` (`protoc --descriptor_set_out`, `buf build -o`). Imports of the
//! well-known `google/protobuf/*.proto` types need no files: protox carries them.

use prost_reflect::DescriptorPool;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// All the schemas given, in one pool; the error says which path failed and why.
pub fn load(paths: &[PathBuf]) -> Result<Option<Arc<DescriptorPool>>, String> {
    if paths.is_empty() {
        return Ok(None);
    }
    let mut pool = DescriptorPool::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| format!("--proto {}: {e}", p.display()))?;
        if meta.is_dir() {
            let mut files = Vec::new();
            find_protos(p, p, &mut files).map_err(|e| format!("--proto {}: {e}", p.display()))?;
            if files.is_empty() {
                return Err(format!("--proto {}: no .proto files in this folder", p.display()));
            }
            files.sort();
            add_compiled(&mut pool, p, &files, p)?;
        } else if p.extension().is_some_and(|x| x == "proto") {
            let root = p.parent().filter(|r| !r.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let rel = p.strip_prefix(root).unwrap_or(p).to_path_buf();
            add_compiled(&mut pool, root, &[rel], p)?;
        } else {
            let bytes = std::fs::read(p).map_err(|e| format!("--proto {}: {e}", p.display()))?;
            pool.decode_file_descriptor_set(bytes.as_slice())
                .map_err(|e| format!("--proto {}: not a .proto file nor a descriptor set: {e}", p.display()))?;
        }
    }
    Ok(Some(Arc::new(pool)))
}

fn add_compiled(pool: &mut DescriptorPool, root: &Path, files: &[PathBuf], shown: &Path) -> Result<(), String> {
    let fail = |e: protox::Error| format!("--proto {}: {e}", shown.display());
    let mut c = protox::Compiler::new([root]).map_err(fail)?;
    c.include_imports(true);
    c.open_files(files).map_err(fail)?;
    let set = c.file_descriptor_set();
    pool.add_file_descriptor_set(set).map_err(|e| format!("--proto {}: {e}", shown.display()))
}

fn find_protos(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let path = e.path();
        if e.file_type()?.is_dir() {
            find_protos(root, &path, out)?;
        } else if path.extension().is_some_and(|x| x == "proto") {
            out.push(path.strip_prefix(root).unwrap_or(&path).to_path_buf());
        }
    }
    Ok(())
}

/// The flags `read` and `tap` share: how much of a body to keep, and gRPC schemas.
#[derive(clap::Args)]
pub struct DissectArgs {
    /// Body bytes kept per message; the rest is counted in the size
    #[arg(long, default_value_t = kshark_dissect::Limits::default().max_body, value_name = "BYTES")]
    pub max_body: usize,
    /// Protobuf schemas for gRPC messages: a .proto file, a folder of them, or a descriptor
    /// set; repeatable. Without one, messages are shown as their wire fields
    #[arg(long, value_name = "FILE|DIR")]
    pub proto: Vec<std::path::PathBuf>,
    /// What to mask before entries are shown or shipped: `default` (credentials in
    /// Authorization, Cookie, Set-Cookie and API-key headers; password, token, secret and
    /// api_key fields in JSON and form bodies and query strings), `none`, or a file of
    /// `header NAME` / `field NAME` / `default` lines
    #[arg(long, default_value = "default", value_name = "none|default|FILE")]
    pub redact: String,
}

impl DissectArgs {
    /// `--redact`, read (a file) and checked once.
    pub fn redactor(&self) -> Result<kshark_dissect::redact::Redactor, crate::Failure> {
        kshark_dissect::redact::Redactor::parse(&self.redact).map_err(crate::Failure::Input)
    }

    /// The dissector's configuration for these flags (the schemas compiled once).
    pub fn config(&self, node: String, capture_source: kshark_dissect::entry::CaptureSource) -> Result<kshark_dissect::Config, crate::Failure> {
        Ok(kshark_dissect::Config {
            limits: kshark_dissect::Limits { max_body: self.max_body, ..Default::default() },
            node,
            capture_source,
            schema: load(&self.proto).map_err(crate::Failure::Input)?,
        })
    }
}
