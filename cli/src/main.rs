//! `ketch`: the command line front door, with Docker's verbs, flags, output and exit codes.

mod build;
mod containers;
mod daemon;
mod format;
mod images;
mod networks;
mod progress;
mod registry;
mod remote;
mod system;
mod volumes;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ketch",
    version,
    about = "A container engine",
    disable_help_subcommand = true
)]
pub struct Cli {
    /// State root.
    #[arg(long, global = true, env = "KETCH_ROOT", default_value = ketch::engine::DEFAULT_ROOT)]
    root: PathBuf,
    /// Storage driver for a new state root (overlay, copy); default: overlay where it works.
    #[arg(long, global = true, env = "KETCH_STORAGE_DRIVER")]
    storage_driver: Option<String>,
    /// Largest uncompressed layer accepted, in bytes (guards against compression bombs).
    #[arg(long, global = true, env = "KETCH_MAX_LAYER_SIZE", value_parser = parse_bytes)]
    max_layer_size: Option<u64>,
    /// Bridge device of the default network for a new state root (default: ketch0 for
    /// /var/lib/ketch, kt and a hash of the root's ID for another).
    #[arg(long, global = true, env = "KETCH_BRIDGE")]
    bridge: Option<String>,
    /// Turn on the host's IPv4 forwarding for bridge networks, as Docker does (true, false).
    #[arg(long, global = true, env = "KETCH_IP_FORWARD", default_value_t = true, action = clap::ArgAction::Set)]
    ip_forward: bool,
    /// Address pool for new networks' subnets, as dockerd's: base=CIDR,size=N (repeatable)
    #[arg(long, global = true, env = "KETCH_DEFAULT_ADDRESS_POOL", value_delimiter = ';', value_parser = ketch::network::subnet::parse_pool)]
    default_address_pool: Vec<(ketch::network::subnet::Subnet, u8)>,
    /// A mirror of docker.io to pull from first (URL; repeatable), as dockerd's
    #[arg(
        long = "registry-mirror",
        global = true,
        env = "KETCH_REGISTRY_MIRRORS",
        value_delimiter = ','
    )]
    registry_mirror: Vec<String>,
    /// A registry (host[:port] or CIDR) to reach over plain HTTP or unverified TLS (repeatable);
    /// localhost and 127.0.0.0/8 always may
    #[arg(
        long = "insecure-registry",
        global = true,
        env = "KETCH_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    insecure_registry: Vec<String>,
    /// The cluster store overlay networks keep their state in, as dockerd's:
    /// etcd://HOST:PORT[,HOST:PORT...]
    #[arg(long, global = true, env = "KETCH_CLUSTER_STORE")]
    cluster_store: Option<String>,
    /// This host's address on the network between the hosts: IP or interface[:port]
    #[arg(long, global = true, env = "KETCH_CLUSTER_ADVERTISE")]
    cluster_advertise: Option<String>,
    /// A cluster store option (repeatable): kv.cacertfile=, kv.certfile=, kv.keyfile=
    #[arg(
        long = "cluster-store-opt",
        global = true,
        env = "KETCH_CLUSTER_STORE_OPTS",
        value_delimiter = ','
    )]
    cluster_store_opt: Vec<String>,
    /// Daemon to talk to (unix:///path, tcp://HOST:PORT), before the command as Docker's
    #[arg(short = 'H', long = "host", env = "KETCH_HOST", value_delimiter = ',')]
    host: Vec<String>,
    /// Use TLS; implied by --tlsverify
    #[arg(long, global = true)]
    tls: bool,
    /// Use TLS and verify the remote (the daemon: client certificates)
    #[arg(long, global = true, env = "KETCH_TLS_VERIFY", value_parser = clap::builder::FalseyValueParser::new())]
    tlsverify: bool,
    /// Trust certs signed only by this CA (default: $KETCH_CERT_PATH/ca.pem)
    #[arg(long, global = true)]
    tlscacert: Option<PathBuf>,
    /// Path to TLS certificate file (default: $KETCH_CERT_PATH/cert.pem)
    #[arg(long, global = true)]
    tlscert: Option<PathBuf>,
    /// Path to TLS key file (default: $KETCH_CERT_PATH/key.pem)
    #[arg(long, global = true)]
    tlskey: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// `1234`, `64k`, `512m`, `2g` (binary units, as Docker's size flags).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    ketch::api::parse_bytes(s)
}

#[derive(Subcommand)]
enum Command {
    /// Create and run a new container from an image
    #[command(disable_help_flag = true)]
    Run {
        #[command(flatten)]
        args: containers::RunArgs,
        #[arg(long, action = clap::ArgAction::Help)]
        help: Option<bool>,
    },
    /// Create a new container
    #[command(disable_help_flag = true)]
    Create {
        #[command(flatten)]
        args: containers::CreateArgs,
        #[arg(long, action = clap::ArgAction::Help)]
        help: Option<bool>,
    },
    /// Start one or more stopped containers
    Start(containers::StartArgs),
    /// List containers
    Ps(containers::PsArgs),
    /// Stop one or more running containers
    Stop(containers::StopArgs),
    /// Restart one or more containers
    Restart(containers::StopArgs),
    /// Kill one or more running containers
    Kill(containers::KillArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(containers::WaitArgs),
    /// Remove one or more containers
    Rm(containers::RmArgs),
    /// Fetch the logs of a container
    Logs(containers::LogsArgs),
    /// Pause all processes within one or more containers
    Pause(containers::NamesArgs),
    /// Unpause all processes within one or more containers
    Unpause(containers::NamesArgs),
    /// Rename a container
    Rename(containers::RenameArgs),
    /// Update configuration of one or more containers
    Update(containers::UpdateArgs),
    /// Execute a command in a running container
    Exec(containers::ExecArgs),
    /// Display the running processes of a container
    Top(containers::TopArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(containers::StatsArgs),
    /// List port mappings or a specific mapping for the container
    Port(containers::PortArgs),
    /// Create a new image from a container's changes
    Commit(containers::CommitArgs),
    /// Move a container to another engine (container move)
    Mv(containers::MoveArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(containers::DiffArgs),
    /// Export a container's filesystem as a tar archive
    Export(containers::ExportArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(containers::CpArgs),
    /// Manage containers
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Import the contents from a tarball to create a filesystem image
    Import(images::ImportArgs),
    /// Load an image from a tar archive or STDIN
    Load(images::LoadArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(images::SaveArgs),
    /// Build an image from a Dockerfile
    Build(build::BuildArgs),
    /// Download an image from a registry
    Pull(registry::PullArgs),
    /// Upload an image to a registry
    Push(registry::PushArgs),
    /// Log in to a registry
    Login(registry::LoginArgs),
    /// Log out from a registry
    Logout(registry::LogoutArgs),
    /// Run a registry of your own
    #[command(subcommand)]
    Registry(registry::RegistryCommand),
    /// List images
    Images(images::ListArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(images::TagArgs),
    /// Remove one or more images
    Rmi(images::RmiArgs),
    /// Show the history of an image
    History(images::HistoryArgs),
    /// Return low-level information on ketch objects
    Inspect(images::InspectArgs),
    /// Manage images
    #[command(subcommand)]
    Image(ImageCommand),
    /// Manage networks
    #[command(subcommand)]
    Network(networks::NetworkCommand),
    /// Manage volumes
    #[command(subcommand)]
    Volume(volumes::VolumeCommand),
    /// Manage ketch
    #[command(subcommand)]
    System(system::SystemCommand),
    /// Serve the Docker Engine API on a UNIX socket
    Daemon(daemon::DaemonArgs),
}

#[derive(Subcommand)]
enum ContainerCommand {
    /// Remove all stopped containers
    Prune(containers::PruneArgs),
    /// List containers
    #[command(alias = "list", alias = "ps")]
    Ls(containers::PsArgs),
    /// Remove one or more containers
    Rm(containers::RmArgs),
    /// Create a new image from a container's changes
    Commit(containers::CommitArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(containers::DiffArgs),
    /// Export a container's filesystem as a tar archive
    Export(containers::ExportArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(containers::CpArgs),
    /// Update configuration of one or more containers
    Update(containers::UpdateArgs),
    /// Move a container to another engine, with its changes, configuration and log
    Move(containers::MoveArgs),
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Build an image from a Dockerfile
    Build(build::BuildArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(images::ImportArgs),
    /// Load an image from a tar archive or STDIN
    Load(images::LoadArgs),
    /// Save one or more images to a tar archive
    Save(images::SaveArgs),
    /// Download an image from a registry
    Pull(registry::PullArgs),
    /// Upload an image to a registry
    Push(registry::PushArgs),
    /// List images
    #[command(alias = "list")]
    Ls(images::ListArgs),
    /// Display detailed information on one or more images
    Inspect(images::InspectArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(images::TagArgs),
    /// Remove one or more images
    #[command(alias = "remove")]
    Rm(images::RmiArgs),
    /// Show the history of an image
    History(images::HistoryArgs),
    /// Remove unused images
    Prune(images::PruneArgs),
}

impl Cli {
    /// The TLS files given (flags, else `$KETCH_CERT_PATH/{ca,cert,key}.pem`), when TLS is
    /// asked for.
    pub fn tls_files(&self) -> Option<ketch::tls::TlsFiles> {
        let given = self.tlscacert.is_some() || self.tlscert.is_some() || self.tlskey.is_some();
        if !(self.tls || self.tlsverify || given) {
            return None;
        }
        let dir = std::env::var_os("KETCH_CERT_PATH").map(PathBuf::from);
        let pick = |flag: &Option<PathBuf>, name: &str| {
            flag.clone()
                .or_else(|| dir.as_ref().map(|d| d.join(name)).filter(|p| p.exists()))
        };
        Some(ketch::tls::TlsFiles {
            ca: pick(&self.tlscacert, "ca.pem"),
            cert: pick(&self.tlscert, "cert.pem"),
            key: pick(&self.tlskey, "key.pem"),
            verify: self.tlsverify,
        })
    }

    /// The daemon to talk to, when one is given (`-H`, `KETCH_HOST`): the CLI is remote.
    pub fn remote(&self) -> anyhow::Result<Option<ketch::client::Client>> {
        match self.host.first() {
            None => Ok(None),
            Some(url) => Ok(Some(ketch::client::Client::new(
                url,
                self.tls_files().as_ref(),
            )?)),
        }
    }

    /// What the verbs talk to: the daemon given by `-H`, else the state root, opened here.
    pub fn api(&self) -> anyhow::Result<Box<dyn ketch::api::Api>> {
        Ok(match self.remote()? {
            Some(c) => Box::new(c),
            None => Box::new(self.engine()?),
        })
    }

    fn engine(&self) -> anyhow::Result<ketch::Engine> {
        // The config file and the environment, then what the flags set over them.
        let mut opts = ketch::Options::from_env()?;
        opts.root = self.root.clone();
        if let Some(d) = &self.storage_driver {
            opts.storage_driver = Some(d.parse()?);
        }
        if let Some(m) = self.max_layer_size {
            opts.max_layer_size = m;
        }
        if let Some(b) = &self.bridge {
            opts.default_bridge = Some(b.clone());
        }
        // On unless the file, the variable or the flag turns it off.
        opts.ip_forward &= self.ip_forward;
        if !self.default_address_pool.is_empty() {
            opts.address_pools = self.default_address_pool.clone();
        }
        if !self.registry_mirror.is_empty() {
            opts.registry.mirrors = self.registry_mirror.clone();
        }
        if !self.insecure_registry.is_empty() {
            opts.registry.insecure = self.insecure_registry.clone();
        }
        if let Some(url) = &self.cluster_store {
            opts.cluster.set_store(url)?;
        }
        if let Some(a) = &self.cluster_advertise {
            opts.cluster.advertise = Some(a.clone());
        }
        opts.cluster.apply_options(&self.cluster_store_opt)?;
        Ok(ketch::Engine::open(&opts)?)
    }
}

fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Run { args, .. } => containers::run(cli, args),
        Command::Create { args, .. } => containers::create(cli, args),
        Command::Start(a) => containers::start(cli, a),
        Command::Ps(a) => containers::ps(cli, a),
        Command::Stop(a) => containers::stop(cli, a),
        Command::Restart(a) => containers::restart(cli, a),
        Command::Kill(a) => containers::kill(cli, a),
        Command::Wait(a) => containers::wait(cli, a),
        Command::Rm(a) => containers::rm(cli, a),
        Command::Logs(a) => containers::logs(cli, a),
        Command::Pause(a) => containers::pause(cli, a),
        Command::Unpause(a) => containers::unpause(cli, a),
        Command::Rename(a) => containers::rename(cli, a),
        Command::Update(a) | Command::Container(ContainerCommand::Update(a)) => {
            containers::update(cli, a)
        }
        Command::Exec(a) => containers::exec(cli, a),
        Command::Top(a) => containers::top(cli, a),
        Command::Stats(a) => containers::stats(cli, a),
        Command::Port(a) => containers::port(cli, a),
        Command::Cp(a) | Command::Container(ContainerCommand::Cp(a)) => containers::cp(cli, a),
        Command::Commit(a) | Command::Container(ContainerCommand::Commit(a)) => {
            containers::commit(cli, a)
        }
        Command::Mv(a) | Command::Container(ContainerCommand::Move(a)) => {
            containers::move_container(cli, a)
        }
        Command::Diff(a) | Command::Container(ContainerCommand::Diff(a)) => {
            containers::diff(cli, a)
        }
        Command::Export(a) | Command::Container(ContainerCommand::Export(a)) => {
            containers::export(cli, a)
        }
        Command::Container(ContainerCommand::Prune(a)) => containers::prune(cli, a),
        Command::Container(ContainerCommand::Ls(a)) => containers::ps(cli, a),
        Command::Container(ContainerCommand::Rm(a)) => containers::rm(cli, a),
        Command::Import(a) | Command::Image(ImageCommand::Import(a)) => images::import(cli, a),
        Command::Load(a) | Command::Image(ImageCommand::Load(a)) => images::load(cli, a),
        Command::Save(a) | Command::Image(ImageCommand::Save(a)) => images::save(cli, a),
        Command::Build(a) | Command::Image(ImageCommand::Build(a)) => build::build(cli, a),
        Command::Pull(a) | Command::Image(ImageCommand::Pull(a)) => registry::pull(cli, a),
        Command::Push(a) | Command::Image(ImageCommand::Push(a)) => registry::push(cli, a),
        Command::Login(a) => registry::login(cli, a),
        Command::Logout(a) => registry::logout(cli, a),
        Command::Registry(c) => registry::run(cli, c),
        Command::Images(a) | Command::Image(ImageCommand::Ls(a)) => images::list(cli, a),
        Command::Tag(a) | Command::Image(ImageCommand::Tag(a)) => images::tag(cli, a),
        Command::Rmi(a) | Command::Image(ImageCommand::Rm(a)) => images::rmi(cli, a),
        Command::History(a) | Command::Image(ImageCommand::History(a)) => images::history(cli, a),
        Command::Inspect(a) => {
            let mut a = a.clone();
            a.containers_too = true;
            images::inspect(cli, &a)
        }
        Command::Image(ImageCommand::Inspect(a)) => images::inspect(cli, a),
        Command::Image(ImageCommand::Prune(a)) => images::prune(cli, a),
        Command::Network(c) => networks::run(cli, c),
        Command::Volume(c) => volumes::run(cli, c),
        Command::System(c) => system::run(cli, c),
        Command::Daemon(a) => daemon::run(cli, a),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                // Docker's CLI exits 125 when it cannot run the command it was given.
                _ => 125,
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            if let Some(containers::Exit(code, msg)) = e.downcast_ref::<containers::Exit>() {
                eprintln!("ketch: {msg}");
                return ExitCode::from(*code);
            }
            eprintln!("Error: {}", chain(&e));
            ExitCode::from(1)
        }
    }
}

/// An error and its causes on one line, skipping causes already in the message.
fn chain(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    msg
}

#[cfg(test)]
mod tests {
    /// Every command's flags are consistent (no short option twice, with globals too).
    #[test]
    fn flags_are_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
