//! The post-receive hook against real git: a bare repository with the hook installed, real
//! pushes, a small HTTP listener that receives what the hook sends, and `berth_hooks` reading
//! it back.

mod post_receive;
