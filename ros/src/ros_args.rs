//! ROS 2 command-line arguments, as `ros2 run` and `ros2 launch` pass them to a node: everything
//! between `--ros-args` and `--` (or the end of the command line), in as many sections as given.
//!
//! Supported, with rcl's meaning:
//! - `-r/--remap [<node>:]<from>:=<to>`: `__node:=<name>` renames the node, `__ns:=<namespace>`
//!   puts it in a namespace, anything else remaps a topic (names are matched fully qualified).
//! - `-p/--param [<node>:]<name>:=<value>`: a parameter; the value is read as YAML.
//! - `--params-file <file>`: a YAML parameters file (`<node>: ros__parameters: {...}`, node keys
//!   with `*` and `**` wildcards, nested namespace keys, nested parameter names joined by `.`).
//!
//! Later overrides win, and `-p` wins over every `--params-file`, as in rcl. The logging flags
//! (`--log-level`, `--log-config-file`, `--{enable,disable}-{rosout,stdout,external-lib}-logs`)
//! are accepted and change nothing (the node logs to stderr only). Anything else, security
//! enclaves included, is refused with [`RosArgsError::Unsupported`].
//!
//! [`apply_parameters`] sets a program's options from its parameters (both `sdac-node` and
//! `sdac-sim-bridge` name each parameter after the option it sets).

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

/// Why the ROS 2 arguments cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RosArgsError {
    #[error("--ros-args: {0} needs a value")]
    MissingValue(String),
    #[error("--ros-args: {0:?} is not valid UTF-8")]
    NotUtf8(OsString),
    #[error("--ros-args {flag} {text:?}: expected [<node>:]<name>:=<value>")]
    NotAnAssignment { flag: &'static str, text: String },
    #[error(
        "--ros-args: {0:?} is not supported (supported: -r/--remap, -p/--param, --params-file \
         and the logging flags)"
    )]
    Unsupported(String),
    #[error("--ros-args -p {name}: {text:?} is not a YAML value: {reason}")]
    BadValue {
        name: String,
        text: String,
        reason: String,
    },
    #[error("reading --params-file {path}: {source}")]
    ReadParamsFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--params-file {path}: {reason}")]
    BadParamsFile { path: PathBuf, reason: String },
}

/// A parameter value as ROS 2 types it.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    Bool(bool),
    Integer(i64),
    Double(f64),
    String(String),
    /// A value of another ROS 2 type (an array, or YAML null); no parameter of the node takes
    /// one. Holds the type's name for the error message.
    Other(&'static str),
}

/// A parameter value of a type (or range) the option it sets cannot take.
#[derive(Debug, thiserror::Error)]
#[error("expected {expected}, got {got}")]
pub struct ParamTypeError {
    expected: &'static str,
    got: String,
}

impl ParamValue {
    /// The ROS 2 type's name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            ParamValue::Bool(_) => "bool",
            ParamValue::Integer(_) => "integer",
            ParamValue::Double(_) => "double",
            ParamValue::String(_) => "string",
            ParamValue::Other(name) => name,
        }
    }

    fn from_yaml(yaml: &Yaml) -> Option<Self> {
        Some(match yaml {
            Yaml::Boolean(b) => ParamValue::Bool(*b),
            Yaml::Integer(i) => ParamValue::Integer(*i),
            Yaml::Real(_) => ParamValue::Double(yaml.as_f64()?),
            Yaml::String(s) => ParamValue::String(s.clone()),
            Yaml::Array(items) => ParamValue::Other(match items.first() {
                Some(Yaml::Boolean(_)) => "bool array",
                Some(Yaml::Integer(_)) => "integer array",
                Some(Yaml::Real(_)) => "double array",
                _ => "string array",
            }),
            Yaml::Null => ParamValue::Other("null"),
            Yaml::Hash(_) | Yaml::Alias(_) | Yaml::BadValue => return None,
        })
    }
    fn wrong(&self, expected: &'static str) -> ParamTypeError {
        let type_name = self.type_name();
        let article = if type_name.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        ParamTypeError {
            expected,
            got: format!("{article} {type_name}"),
        }
    }

    /// A string.
    pub fn to_text(&self) -> Result<String, ParamTypeError> {
        match self {
            ParamValue::String(s) => Ok(s.clone()),
            _ => Err(self.wrong("a string")),
        }
    }

    /// A number: a double, or an integer read as one.
    pub fn to_f64(&self) -> Result<f64, ParamTypeError> {
        match self {
            ParamValue::Double(d) => Ok(*d),
            ParamValue::Integer(i) => Ok(*i as f64),
            _ => Err(self.wrong("a number")),
        }
    }

    pub fn to_bool(&self) -> Result<bool, ParamTypeError> {
        match self {
            ParamValue::Bool(b) => Ok(*b),
            _ => Err(self.wrong("a bool")),
        }
    }

    /// A non-negative integer.
    pub fn to_u64(&self) -> Result<u64, ParamTypeError> {
        match self {
            ParamValue::Integer(i) => u64::try_from(*i).map_err(|_| ParamTypeError {
                expected: "a non-negative integer",
                got: i.to_string(),
            }),
            _ => Err(self.wrong("an integer")),
        }
    }

    /// A CPU number, or -1 for any CPU (`None`).
    pub fn to_cpu(&self) -> Result<Option<usize>, ParamTypeError> {
        match self {
            ParamValue::Integer(-1) => Ok(None),
            ParamValue::Integer(i) => usize::try_from(*i).map(Some).map_err(|_| ParamTypeError {
                expected: "a CPU number or -1 (any CPU)",
                got: i.to_string(),
            }),
            _ => Err(self.wrong("an integer")),
        }
    }

    /// A path, where the empty string means none.
    pub fn to_optional_path(&self) -> Result<Option<PathBuf>, ParamTypeError> {
        let text = self.to_text()?;
        Ok((!text.is_empty()).then(|| PathBuf::from(text)))
    }

    /// An optional path as a parameter value (none: the empty string).
    pub fn optional_path(path: Option<&Path>) -> Self {
        ParamValue::String(path.map_or(String::new(), |p| p.display().to_string()))
    }

    /// An optional CPU as a parameter value (any: -1).
    pub fn optional_cpu(cpu: Option<usize>) -> Self {
        ParamValue::Integer(cpu.map_or(-1, |cpu| i64::try_from(cpu).unwrap_or(i64::MAX)))
    }
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Bool(b) => write!(f, "{b}"),
            ParamValue::Integer(i) => write!(f, "{i}"),
            ParamValue::Double(d) => write!(f, "{d}"),
            ParamValue::String(s) => write!(f, "{s:?}"),
            ParamValue::Other(name) => write!(f, "<{name}>"),
        }
    }
}

/// Where a parameter value came from.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamSource {
    /// `-p name:=value`.
    CommandLine,
    /// A `--params-file`, in a section for this node by name (`exact`) or by a wildcard.
    File { path: PathBuf, exact: bool },
}

impl fmt::Display for ParamSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamSource::CommandLine => write!(f, "--ros-args -p"),
            ParamSource::File { path, .. } => write!(f, "--params-file {}", path.display()),
        }
    }
}

/// One parameter value for the node, with its origin.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamOverride {
    pub name: String,
    pub value: ParamValue,
    pub source: ParamSource,
}

impl ParamOverride {
    /// From a wildcard section of a parameters file (`/**`, `*`): meant for every node of a
    /// launch, so a program that does not have this parameter ignores it (and says so).
    pub fn is_shared(&self) -> bool {
        matches!(self.source, ParamSource::File { exact: false, .. })
    }
}

/// A `-r` rule; `node` limits it to the node of that name.
#[derive(Debug, Clone, PartialEq)]
struct Remap {
    node: Option<String>,
    from: String,
    to: String,
}

/// A `-p` value; `node` limits it to the node of that name.
#[derive(Debug, Clone, PartialEq)]
struct CommandLineParam {
    node: Option<String>,
    name: String,
    value: ParamValue,
}

/// One `ros__parameters` section of a parameters file.
#[derive(Debug, Clone, PartialEq)]
struct FileSection {
    path: PathBuf,
    /// The node key, fully qualified (`/**`, `/robot/sdac_node`, `/*/sdac_node`, ...).
    node_pattern: String,
    parameters: Vec<(String, ParamValue)>,
}

/// The ROS 2 arguments of one command line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RosArgs {
    remaps: Vec<Remap>,
    params: Vec<CommandLineParam>,
    files: Vec<FileSection>,
}

const LOGGING_FLAGS_WITH_VALUE: [&str; 2] = ["--log-level", "--log-config-file"];
const LOGGING_FLAGS: [&str; 6] = [
    "--enable-rosout-logs",
    "--disable-rosout-logs",
    "--enable-stdout-logs",
    "--disable-stdout-logs",
    "--enable-external-lib-logs",
    "--disable-external-lib-logs",
];

/// Splits a command line into the node's own arguments and its ROS 2 arguments; reads the
/// parameters files it names.
pub fn split(
    argv: impl IntoIterator<Item = OsString>,
) -> Result<(Vec<OsString>, RosArgs), RosArgsError> {
    let mut own = Vec::new();
    let mut ros = RosArgs::default();
    let mut argv = argv.into_iter();
    while let Some(arg) = argv.next() {
        if arg != "--ros-args" {
            own.push(arg);
            continue;
        }
        while let Some(arg) = argv.next() {
            let arg = utf8(arg)?;
            let mut value = |flag: &str| -> Result<String, RosArgsError> {
                utf8(
                    argv.next()
                        .ok_or_else(|| RosArgsError::MissingValue(flag.to_owned()))?,
                )
            };
            match arg.as_str() {
                "--" => break,
                "-r" | "--remap" => {
                    let text = value(&arg)?;
                    let (node, from, to) = assignment("-r", &text)?;
                    ros.remaps.push(Remap {
                        node,
                        from: from.to_owned(),
                        to: to.to_owned(),
                    });
                }
                "-p" | "--param" => {
                    let assigned = value(&arg)?;
                    let (node, name, text) = assignment("-p", &assigned)?;
                    let value = parse_value(text).map_err(|reason| RosArgsError::BadValue {
                        name: name.to_owned(),
                        text: text.to_owned(),
                        reason,
                    })?;
                    ros.params.push(CommandLineParam {
                        node,
                        name: name.to_owned(),
                        value,
                    });
                }
                "--params-file" => {
                    let path = PathBuf::from(value(&arg)?);
                    ros.files.extend(read_params_file(&path)?);
                }
                flag if LOGGING_FLAGS_WITH_VALUE.contains(&flag) => {
                    value(flag)?;
                }
                flag if LOGGING_FLAGS.contains(&flag) => {}
                other => return Err(RosArgsError::Unsupported(other.to_owned())),
            }
        }
    }
    Ok((own, ros))
}

fn utf8(arg: OsString) -> Result<String, RosArgsError> {
    arg.into_string().map_err(RosArgsError::NotUtf8)
}

/// `[<node>:]<name>:=<value>` as (node, name, value).
fn assignment<'a>(
    flag: &'static str,
    text: &'a str,
) -> Result<(Option<String>, &'a str, &'a str), RosArgsError> {
    let bad = || RosArgsError::NotAnAssignment {
        flag,
        text: text.to_owned(),
    };
    let (target, value) = text.split_once(":=").ok_or_else(bad)?;
    let (node, name) = match target.split_once(':') {
        Some((node, name)) => (Some(node.to_owned()), name),
        None => (None, target),
    };
    if name.is_empty() || node.as_deref() == Some("") {
        return Err(bad());
    }
    Ok((node, name, value))
}

/// A `-p` value read as YAML, as rcl reads it.
fn parse_value(text: &str) -> Result<ParamValue, String> {
    let documents = YamlLoader::load_from_str(text).map_err(|e| e.to_string())?;
    match documents.as_slice() {
        [] => Ok(ParamValue::String(String::new())),
        [yaml] => ParamValue::from_yaml(yaml).ok_or_else(|| "not a scalar or an array".to_owned()),
        _ => Err("more than one YAML document".to_owned()),
    }
}

fn read_params_file(path: &Path) -> Result<Vec<FileSection>, RosArgsError> {
    let text = std::fs::read_to_string(path).map_err(|source| RosArgsError::ReadParamsFile {
        path: path.to_owned(),
        source,
    })?;
    let bad = |reason: String| RosArgsError::BadParamsFile {
        path: path.to_owned(),
        reason,
    };
    let documents = YamlLoader::load_from_str(&text).map_err(|e| bad(e.to_string()))?;
    let mut sections = Vec::new();
    for document in &documents {
        collect_sections(path, document, &mut Vec::new(), &mut sections).map_err(bad)?;
    }
    Ok(sections)
}

/// Walks node keys (each a namespace token or a node name) down to `ros__parameters`.
fn collect_sections(
    path: &Path,
    yaml: &Yaml,
    node_tokens: &mut Vec<String>,
    sections: &mut Vec<FileSection>,
) -> Result<(), String> {
    let Yaml::Hash(map) = yaml else {
        return Err(format!(
            "under /{} expected a map of node names or ros__parameters",
            node_tokens.join("/")
        ));
    };
    for (key, value) in map {
        let key = key
            .as_str()
            .ok_or_else(|| format!("under /{}: a key is not a string", node_tokens.join("/")))?;
        if key == "ros__parameters" {
            if node_tokens.is_empty() {
                return Err("ros__parameters outside a node key".to_owned());
            }
            let mut parameters = Vec::new();
            flatten_parameters(value, "", &mut parameters)?;
            sections.push(FileSection {
                path: path.to_owned(),
                node_pattern: format!("/{}", node_tokens.join("/")),
                parameters,
            });
        } else {
            let depth = node_tokens.len();
            node_tokens.extend(
                key.split('/')
                    .filter(|token| !token.is_empty())
                    .map(str::to_owned),
            );
            collect_sections(path, value, node_tokens, sections)?;
            node_tokens.truncate(depth);
        }
    }
    Ok(())
}

/// Parameter names of nested maps joined by `.`, as ROS 2 names them; `prefix` is the name of
/// the map `yaml` (empty at `ros__parameters` itself).
fn flatten_parameters(
    yaml: &Yaml,
    prefix: &str,
    out: &mut Vec<(String, ParamValue)>,
) -> Result<(), String> {
    let at = if prefix.is_empty() {
        "ros__parameters".to_owned()
    } else {
        format!("ros__parameters.{prefix}")
    };
    let Yaml::Hash(map) = yaml else {
        return Err(format!("{at}: expected a map"));
    };
    for (key, value) in map {
        let key = key
            .as_str()
            .ok_or_else(|| format!("{at}: a key is not a string"))?;
        let name = if prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{prefix}.{key}")
        };
        if let Yaml::Hash(_) = value {
            flatten_parameters(value, &name, out)?;
        } else {
            let value = ParamValue::from_yaml(value)
                .ok_or_else(|| format!("parameter {name}: not a ROS 2 parameter value"))?;
            out.push((name, value));
        }
    }
    Ok(())
}

/// Whether the fully qualified node name `name` matches a params-file node key; `*` matches one
/// token, `**` any number (also none).
fn node_pattern_matches(pattern: &str, name: &str) -> bool {
    fn tokens(text: &str) -> Vec<&str> {
        text.split('/').filter(|t| !t.is_empty()).collect()
    }
    fn matches(pattern: &[&str], name: &[&str]) -> bool {
        match (pattern.first(), name.first()) {
            (None, None) => true,
            (Some(&"**"), _) => {
                matches(&pattern[1..], name) || (!name.is_empty() && matches(pattern, &name[1..]))
            }
            (Some(&p), Some(&n)) => (p == "*" || p == n) && matches(&pattern[1..], &name[1..]),
            _ => false,
        }
    }
    matches(&tokens(pattern), &tokens(name))
}

/// `namespace` and `name` joined into a fully qualified name.
pub fn fully_qualified(namespace: &str, name: &str) -> String {
    if namespace == "/" {
        format!("/{name}")
    } else {
        format!("{namespace}/{name}")
    }
}

impl RosArgs {
    fn applies_to(rule_node: &Option<String>, node_name: &str) -> bool {
        rule_node.as_deref().is_none_or(|n| n == node_name)
    }

    /// The node's name after `__node:=` (the last rule for `default_name` wins), if renamed.
    pub fn node_name(&self, default_name: &str) -> Option<&str> {
        self.remaps
            .iter()
            .filter(|r| r.from == "__node" || r.from == "__name")
            .filter(|r| Self::applies_to(&r.node, default_name))
            .map(|r| r.to.as_str())
            .next_back()
    }

    /// The node's namespace after `__ns:=`, absolute (`/` when none is given).
    pub fn namespace(&self, default_name: &str) -> String {
        let namespace = self
            .remaps
            .iter()
            .filter(|r| r.from == "__ns")
            .filter(|r| Self::applies_to(&r.node, default_name))
            .map(|r| r.to.trim_end_matches('/'))
            .next_back()
            .unwrap_or("");
        if namespace.starts_with('/') {
            namespace.to_owned()
        } else {
            format!("/{namespace}")
        }
    }

    /// `topic` expanded to a fully qualified name (relative to `namespace`; `~/` private to the
    /// node), then remapped by the first rule whose expanded `from` is that name.
    pub fn resolve_topic(&self, topic: &str, namespace: &str, node_name: &str) -> String {
        let expand = |name: &str| -> String {
            if name.starts_with('/') {
                name.to_owned()
            } else if let Some(private) = name.strip_prefix("~/") {
                format!("{}/{private}", fully_qualified(namespace, node_name))
            } else if name == "~" {
                fully_qualified(namespace, node_name)
            } else {
                fully_qualified(namespace, name)
            }
        };
        let expanded = expand(topic);
        self.remaps
            .iter()
            .filter(|r| !r.from.starts_with("__"))
            .filter(|r| Self::applies_to(&r.node, node_name))
            .find(|r| expand(&r.from) == expanded)
            .map_or(expanded, |r| expand(&r.to))
    }

    /// The parameter values for the node `node_name` in `namespace`, each name once, with the
    /// value that wins (files in order, then `-p` in order).
    pub fn parameters(&self, namespace: &str, node_name: &str) -> Vec<ParamOverride> {
        let node = fully_qualified(namespace, node_name);
        let mut winners: Vec<ParamOverride> = Vec::new();
        let mut set = |name: &str, value: &ParamValue, source: ParamSource| {
            let entry = ParamOverride {
                name: name.to_owned(),
                value: value.clone(),
                source,
            };
            match winners.iter_mut().find(|w| w.name == name) {
                Some(winner) => *winner = entry,
                None => winners.push(entry),
            }
        };
        for section in &self.files {
            if node_pattern_matches(&section.node_pattern, &node) {
                let exact = !section.node_pattern.contains('*');
                for (name, value) in &section.parameters {
                    let source = ParamSource::File {
                        path: section.path.clone(),
                        exact,
                    };
                    set(name, value, source);
                }
            }
        }
        for param in self
            .params
            .iter()
            .filter(|p| Self::applies_to(&p.node, node_name))
        {
            set(&param.name, &param.value, ParamSource::CommandLine);
        }
        winners
    }
}

/// Why a program cannot take the ROS 2 parameters it was given.
#[derive(Debug, thiserror::Error)]
pub enum ParamError {
    #[error("{name} is given twice: as --{flag} and as the ROS 2 parameter ({origin})")]
    GivenTwice {
        name: String,
        flag: String,
        origin: ParamSource,
    },
    #[error("ROS 2 parameter {name} = {value} ({origin}): {reason}")]
    Invalid {
        name: String,
        value: ParamValue,
        origin: ParamSource,
        reason: String,
    },
    #[error("{name} is not a parameter of {program} (its parameters: {known})")]
    Unknown {
        name: String,
        program: String,
        known: String,
    },
}

/// What [`apply_parameters`] did besides setting options.
#[derive(Debug, Default)]
pub struct AppliedParameters {
    /// The value of `use_sim_time` (which no option has).
    pub use_sim_time: bool,
    /// Parameters from wildcard sections of parameters files that the program does not have:
    /// meant for other nodes of a launch (or a typo), to be reported and otherwise ignored.
    pub ignored: Vec<ParamOverride>,
}

impl AppliedParameters {
    /// One line per ignored parameter, to print on stderr.
    pub fn ignored_lines(&self, program: &str, options: &[&str]) -> Vec<String> {
        self.ignored
            .iter()
            .map(|parameter| {
                format!(
                    "ignoring {} from a wildcard section of {}: not a parameter of {program} \
                     (its parameters: {})",
                    parameter.name,
                    parameter.source,
                    parameter_list(options)
                )
            })
            .collect()
    }
}

/// A program's parameters for messages: its options' names, then `use_sim_time`.
fn parameter_list(options: &[&str]) -> String {
    format!("{}, use_sim_time", options.join(", "))
}

/// Sets a program's options from its ROS 2 parameters, each parameter named as the option it
/// sets (`obs_topic` is `--obs-topic`). `given_as_option(name)` says whether that option was on
/// the command line (then the parameter is refused: the value would be ambiguous).
/// `set_option(name, value)` sets the option and returns `Ok(true)`, or `Ok(false)` where the
/// program has no such option. `use_sim_time` is taken here. A name the program does not have is
/// refused, unless it comes from a wildcard section of a parameters file (see
/// [`ParamOverride::is_shared`]).
pub fn apply_parameters<E: fmt::Display>(
    program: &str,
    options: &[&str],
    parameters: &[ParamOverride],
    given_as_option: impl Fn(&str) -> bool,
    mut set_option: impl FnMut(&str, &ParamValue) -> Result<bool, E>,
) -> Result<AppliedParameters, ParamError> {
    let mut applied = AppliedParameters::default();
    for parameter in parameters {
        let name = parameter.name.as_str();
        let invalid = |reason: String| ParamError::Invalid {
            name: name.to_owned(),
            value: parameter.value.clone(),
            origin: parameter.source.clone(),
            reason,
        };
        let known = if name == "use_sim_time" {
            applied.use_sim_time = parameter
                .value
                .to_bool()
                .map_err(|e| invalid(e.to_string()))?;
            true
        } else if options.contains(&name) {
            if given_as_option(name) {
                return Err(ParamError::GivenTwice {
                    name: name.to_owned(),
                    flag: name.replace('_', "-"),
                    origin: parameter.source.clone(),
                });
            }
            set_option(name, &parameter.value).map_err(|e| invalid(format!("{e:#}")))?
        } else {
            false
        };
        if !known {
            if !parameter.is_shared() {
                return Err(ParamError::Unknown {
                    name: name.to_owned(),
                    program: program.to_owned(),
                    known: parameter_list(options),
                });
            }
            applied.ignored.push(parameter.clone());
        }
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn args(text: &str) -> Vec<OsString> {
        text.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn ros_args_are_split_from_the_node_arguments() {
        let (own, ros) = split(args(
            "sdac-node --policy p.safetensors --ros-args -r __node:=arm -p rate:=500 --log-level \
             debug --disable-stdout-logs -- --seed 3 --ros-args --remap __ns:=/robot",
        ))
        .unwrap();
        assert_eq!(
            own,
            args("sdac-node --policy p.safetensors --seed 3"),
            "the node's own arguments keep their order"
        );
        assert_eq!(ros.node_name("sdac_node"), Some("arm"));
        assert_eq!(ros.namespace("sdac_node"), "/robot");
        let params = ros.parameters("/robot", "arm");
        assert_eq!(params.len(), 1);
        assert_eq!(params[0].name, "rate");
        assert_eq!(params[0].value, ParamValue::Integer(500));
        assert_eq!(params[0].source, ParamSource::CommandLine);

        let (own, ros) = split(args("sdac-node --policy p.safetensors")).unwrap();
        assert_eq!(own.len(), 3);
        assert_eq!(ros, RosArgs::default());
        assert_eq!(ros.namespace("sdac_node"), "/");
        assert_eq!(ros.node_name("sdac_node"), None);
    }

    #[test]
    fn parameter_values_are_typed_as_yaml() {
        let (_, ros) = split(args(
            "n --ros-args -p a:=true -p b:=-3 -p c:=2.5 -p d:=/robot/obs -p e:=[1,2] -p f:=hold \
             -p g:='7'",
        ))
        .unwrap();
        let values: Vec<ParamValue> = ros
            .parameters("/", "sdac_node")
            .into_iter()
            .map(|p| p.value)
            .collect();
        assert_eq!(
            values,
            vec![
                ParamValue::Bool(true),
                ParamValue::Integer(-3),
                ParamValue::Double(2.5),
                ParamValue::String("/robot/obs".to_owned()),
                ParamValue::Other("integer array"),
                ParamValue::String("hold".to_owned()),
                ParamValue::String("7".to_owned()),
            ]
        );
    }

    #[test]
    fn bad_ros_args_are_refused() {
        let error = |text: &str| split(args(text)).unwrap_err().to_string();
        assert!(error("n --ros-args -p").contains("-p needs a value"));
        assert!(error("n --ros-args -p rate=5").contains("expected [<node>:]<name>:=<value>"));
        assert!(error("n --ros-args -r :=x").contains("expected"));
        assert!(error("n --ros-args -e /enclave").contains("\"-e\" is not supported"));
        assert!(error("n --ros-args --log-level").contains("--log-level needs a value"));
        assert!(error("n --ros-args -p rate:=[1,").contains("is not a YAML value"));
        assert!(error("n --ros-args --params-file /nonexistent/p.yaml").contains("reading"));
    }

    #[test]
    fn topics_expand_and_remap_by_fully_qualified_name() {
        let (_, ros) = split(args(
            "n --ros-args -r __ns:=/robot -r /sdac/command:=/arm/cmd -r observation:=sensors/obs \
             -r other_node:/diagnostics:=/x",
        ))
        .unwrap();
        let ns = ros.namespace("sdac_node");
        let resolve = |topic: &str| ros.resolve_topic(topic, &ns, "sdac_node");
        assert_eq!(resolve("/sdac/command"), "/arm/cmd");
        assert_eq!(resolve("observation"), "/robot/sensors/obs");
        assert_eq!(resolve("/robot/observation"), "/robot/sensors/obs");
        assert_eq!(resolve("~/state"), "/robot/sdac_node/state");
        // A rule for another node does not apply.
        assert_eq!(resolve("/diagnostics"), "/diagnostics");
    }

    #[test]
    fn params_files_match_nodes_and_command_line_values_win() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        write!(
            file,
            "/**:\n  ros__parameters:\n    rate: 250.0\n    use_sim_time: false\n\
             robot:\n  sdac_node:\n    ros__parameters:\n      rate: 500\n      \
             obs_topic: /robot/obs\n      limits:\n        hold: true\n\
             other_node:\n  ros__parameters:\n    rate: 1.0\n\
             /*/sdac_node:\n  ros__parameters:\n    seed: 4\n"
        )
        .unwrap();
        let path = file.path().to_str().unwrap().to_owned();
        let (_, ros) = split(args(&format!(
            "n --ros-args --params-file {path} -p sdac_node:seed:=9 -p other:seed:=1"
        )))
        .unwrap();
        let params = ros.parameters("/robot", "sdac_node");
        let get = |name: &str| params.iter().find(|p| p.name == name).cloned().unwrap();
        assert_eq!(get("rate").value, ParamValue::Integer(500));
        assert_eq!(
            get("rate").source,
            ParamSource::File {
                path: file.path().to_owned(),
                exact: true
            }
        );
        assert_eq!(get("use_sim_time").value, ParamValue::Bool(false));
        assert!(matches!(
            get("use_sim_time").source,
            ParamSource::File { exact: false, .. }
        ));
        assert_eq!(
            get("obs_topic").value,
            ParamValue::String("/robot/obs".into())
        );
        assert_eq!(get("limits.hold").value, ParamValue::Bool(true));
        assert_eq!(get("seed").value, ParamValue::Integer(9));
        assert_eq!(get("seed").source, ParamSource::CommandLine);
        assert_eq!(params.len(), 5);
        // Another namespace: only the wildcard section applies.
        let elsewhere = ros.parameters("/", "sdac_node");
        assert_eq!(elsewhere.len(), 3, "{elsewhere:?}");
    }

    #[test]
    fn malformed_params_files_are_refused() {
        for text in [
            "ros__parameters:\n  rate: 1\n",
            "sdac_node:\n  ros__parameters: 5\n",
            "sdac_node: [1, 2]\n",
            "sdac_node:\n  ros__parameters:\n    rate: [1, 2\n",
        ] {
            let mut file = tempfile::NamedTempFile::new().unwrap();
            file.write_all(text.as_bytes()).unwrap();
            let path = file.path().to_str().unwrap().to_owned();
            let error = split(args(&format!("n --ros-args --params-file {path}")))
                .unwrap_err()
                .to_string();
            assert!(error.starts_with("--params-file"), "{text:?}: {error}");
        }
    }

    #[test]
    fn node_patterns_follow_rcl_wildcards() {
        assert!(node_pattern_matches("/**", "/sdac_node"));
        assert!(node_pattern_matches("/**", "/a/b/sdac_node"));
        assert!(node_pattern_matches("/**/sdac_node", "/sdac_node"));
        assert!(node_pattern_matches("/**/sdac_node", "/a/b/sdac_node"));
        assert!(node_pattern_matches("/*/sdac_node", "/a/sdac_node"));
        assert!(!node_pattern_matches("/*/sdac_node", "/sdac_node"));
        assert!(node_pattern_matches("/sdac_node", "/sdac_node"));
        assert!(!node_pattern_matches("/sdac_node", "/robot/sdac_node"));
        assert!(!node_pattern_matches("/robot/*", "/robot/a/b"));
    }

    /// Options are set in order; `use_sim_time` is taken here; a name the program lacks is
    /// ignored from a wildcard section only; an option also on the command line is refused.
    #[test]
    fn parameters_set_options_or_are_refused() {
        let wildcard = ParamSource::File {
            path: "p.yaml".into(),
            exact: false,
        };
        let parameter = |name: &str, value: ParamValue, source: &ParamSource| ParamOverride {
            name: name.to_owned(),
            value,
            source: source.clone(),
        };
        let mut rate = 0.0;
        let applied = apply_parameters(
            "prog",
            &["rate"],
            &[
                parameter("rate", ParamValue::Integer(5), &ParamSource::CommandLine),
                parameter("use_sim_time", ParamValue::Bool(true), &wildcard),
                parameter("gain", ParamValue::Double(0.5), &wildcard),
            ],
            |_| false,
            |name, value| -> Result<bool, ParamTypeError> {
                rate = value.to_f64()?;
                Ok(name == "rate")
            },
        )
        .unwrap();
        assert_eq!(rate, 5.0);
        assert!(applied.use_sim_time);
        assert_eq!(applied.ignored.len(), 1);
        assert_eq!(applied.ignored[0].name, "gain");

        let refuse = |parameters: &[ParamOverride], given: bool| {
            apply_parameters(
                "prog",
                &["rate"],
                parameters,
                |_| given,
                |_, value| value.to_f64().map(|_| true),
            )
            .unwrap_err()
            .to_string()
        };
        let gain = parameter("gain", ParamValue::Double(0.5), &ParamSource::CommandLine);
        assert_eq!(
            refuse(&[gain], false),
            "gain is not a parameter of prog (its parameters: rate, use_sim_time)"
        );
        let rate = parameter("rate", ParamValue::Bool(true), &ParamSource::CommandLine);
        assert_eq!(
            refuse(std::slice::from_ref(&rate), false),
            "ROS 2 parameter rate = true (--ros-args -p): expected a number, got a bool"
        );
        assert_eq!(
            refuse(&[rate], true),
            "rate is given twice: as --rate and as the ROS 2 parameter (--ros-args -p)"
        );
        let sim_time = parameter("use_sim_time", ParamValue::Integer(1), &wildcard);
        assert!(refuse(&[sim_time], false).contains("expected a bool, got an integer"));
    }
}
