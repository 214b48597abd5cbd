//! Tiny traffic helpers run inside lab namespaces (`ip netns exec NS
//! <xtask> lab-tool ...`), so demos and benches need no extra tools.

use std::{
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    time::Duration,
};

use anyhow::{Context as _, Result};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum Tool {
    /// Accept TCP connections on PORT (all addresses) for SECONDS.
    Listen {
        #[arg(long)]
        port: u16,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
    },
    /// Try one TCP connection; print how it ended.
    Connect {
        addr: SocketAddr,
        #[arg(long, default_value_t = 3)]
        timeout: u64,
    },
    /// Send COUNT UDP datagrams to ADDR.
    Udp {
        addr: SocketAddr,
        #[arg(long, default_value_t = 3)]
        count: u32,
    },
}

pub fn run(tool: Tool) -> Result<()> {
    match tool {
        Tool::Listen { port, seconds } => {
            let l =
                TcpListener::bind(("::", port)).or_else(|_| TcpListener::bind(("0.0.0.0", port))).context("bind")?;
            l.set_nonblocking(true)?;
            let end = std::time::Instant::now() + Duration::from_secs(seconds);
            while std::time::Instant::now() < end {
                match l.accept() {
                    Ok((_s, peer)) => println!("accepted {peer}"),
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
            Ok(())
        }
        Tool::Connect { addr, timeout } => {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(timeout)) {
                Ok(_) => println!("connected to {addr}"),
                Err(e) => println!("connect to {addr}: {e}"),
            }
            Ok(())
        }
        Tool::Udp { addr, count } => {
            let bind = if addr.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" };
            let s = UdpSocket::bind(bind).context("bind")?;
            for _ in 0..count {
                let _ = s.send_to(b"netobs lab", addr);
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(())
        }
    }
}
