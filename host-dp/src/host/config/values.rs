//! The config's value types that are written as strings: service modes and addresses.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// Where a service's policy runs: the three setups every experiment compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceMode {
    /// No agent: the host's own local policy.
    #[default]
    Local,
    /// The policy in an agent thread of this process (`ipu-cp`'s code, as a library).
    OnHost,
    /// The policy in the separate `ipu-cp` process, over shared memory.
    Offloaded,
}

impl ServiceMode {
    /// The name in configs and reports.
    pub fn name(self) -> &'static str {
        match self {
            ServiceMode::Local => "local",
            ServiceMode::OnHost => "on-host",
            ServiceMode::Offloaded => "offloaded",
        }
    }
}

impl std::fmt::Display for ServiceMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ServiceMode {
    type Err = String;
    fn from_str(text: &str) -> Result<ServiceMode, String> {
        match text {
            "local" => Ok(ServiceMode::Local),
            "on-host" => Ok(ServiceMode::OnHost),
            "offloaded" => Ok(ServiceMode::Offloaded),
            _ => Err(format!("`{text}`: expected local, on-host or offloaded")),
        }
    }
}

/// An IPv4 address with its prefix length, written `198.18.0.2/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    /// The address.
    pub ip: Ipv4Addr,
    /// The prefix length, 0..=32.
    pub prefix_len: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(text: &str) -> Result<Cidr, String> {
        let (ip, len) =
            text.split_once('/').ok_or("expected ADDRESS/PREFIX, e.g. 198.18.0.2/24")?;
        let ip = ip.parse().map_err(|e| format!("bad address `{ip}`: {e}"))?;
        let prefix_len = len.parse().ok().filter(|&l| l <= 32).ok_or("prefix length 0..=32")?;
        Ok(Cidr { ip, prefix_len })
    }
}

impl TryFrom<String> for Cidr {
    type Error = String;
    fn try_from(text: String) -> Result<Cidr, String> {
        text.parse()
    }
}

impl From<Cidr> for String {
    fn from(cidr: Cidr) -> String {
        cidr.to_string()
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.ip, self.prefix_len)
    }
}
