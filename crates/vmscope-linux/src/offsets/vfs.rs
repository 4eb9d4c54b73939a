//! The VFS structures behind a path and an open file: `struct file`, `dentry`,
//! `mount`, `inode`, `super_block`, and a task's `files_struct` and `fs_struct`.

use serde::{Deserialize, Serialize};

use crate::{Profile, Result};

/// What rebuilding a path (`d_path`) and describing a file read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct VfsOffsets {
    /// `path.mnt`, `path.dentry`.
    pub path_mnt: u64,
    pub path_dentry: u64,
    /// `dentry.d_parent`.
    pub d_parent: u64,
    /// `dentry.d_name.len` (a `u32`) and `d_name.name`.
    pub d_name_len: u64,
    pub d_name_name: u64,
    pub d_inode: u64,
    pub d_op: u64,
    /// `dentry.d_hash.pprev`: NULL when the dentry is unhashed (deleted).
    pub d_hash_pprev: u64,
    /// `dentry_operations.d_dname`: the name generator of pseudo files (pipes,
    /// sockets, anonymous inodes).
    pub d_dname: u64,
    /// `mount.mnt`: the `struct vfsmount` inside `struct mount`.
    pub mnt: u64,
    pub mnt_parent: u64,
    pub mnt_mountpoint: u64,
    /// `vfsmount.mnt_root`.
    pub mnt_root: u64,
    pub mnt_id: u64,
    pub i_mode: u64,
    pub i_ino: u64,
    pub i_sb: u64,
    /// `super_block.s_dev`.
    pub s_dev: u64,
    /// `struct file`: `f_path`, `f_inode`, `f_flags`, `f_mode`, `f_pos`.
    pub f_path: u64,
    pub f_inode: u64,
    pub f_flags: u64,
    pub f_mode: u64,
    pub f_pos: u64,
}

impl VfsOffsets {
    /// Bytes of `struct dentry` that hold every field read.
    pub fn dentry_span(&self) -> u64 {
        [self.d_parent, self.d_name_len, self.d_name_name, self.d_inode, self.d_op, self.d_hash_pprev]
            .into_iter()
            .max()
            .unwrap_or(0)
            + 8
    }

    /// Bytes of `struct mount` that hold every field read.
    pub fn mount_span(&self) -> u64 {
        [self.mnt_parent, self.mnt_mountpoint, self.mnt + self.mnt_root, self.mnt_id].into_iter().max().unwrap_or(0) + 8
    }

    /// Bytes of `struct file` that hold every field read.
    pub fn file_span(&self) -> u64 {
        [
            self.f_path + self.path_mnt,
            self.f_path + self.path_dentry,
            self.f_inode,
            self.f_flags,
            self.f_mode,
            self.f_pos,
        ]
        .into_iter()
        .max()
        .unwrap_or(0)
            + 8
    }

    /// Bytes of `struct inode` that hold every field read.
    pub fn inode_span(&self) -> u64 {
        self.i_mode.max(self.i_ino).max(self.i_sb) + 8
    }

    pub(crate) fn resolve(p: &Profile) -> Result<VfsOffsets> {
        let off = |ty: &str, f: &str| p.offset_of(ty, f);
        Ok(VfsOffsets {
            path_mnt: off("path", "mnt")?,
            path_dentry: off("path", "dentry")?,
            d_parent: off("dentry", "d_parent")?,
            d_name_len: off("dentry", "d_name.len")?,
            d_name_name: off("dentry", "d_name.name")?,
            d_inode: off("dentry", "d_inode")?,
            d_op: off("dentry", "d_op")?,
            d_hash_pprev: off("dentry", "d_hash.pprev")?,
            d_dname: off("dentry_operations", "d_dname")?,
            mnt: off("mount", "mnt")?,
            mnt_parent: off("mount", "mnt_parent")?,
            mnt_mountpoint: off("mount", "mnt_mountpoint")?,
            mnt_root: off("vfsmount", "mnt_root")?,
            mnt_id: off("mount", "mnt_id")?,
            i_mode: off("inode", "i_mode")?,
            i_ino: off("inode", "i_ino")?,
            i_sb: off("inode", "i_sb")?,
            s_dev: off("super_block", "s_dev")?,
            f_path: off("file", "f_path")?,
            f_inode: off("file", "f_inode")?,
            f_flags: off("file", "f_flags")?,
            f_mode: off("file", "f_mode")?,
            f_pos: off("file", "f_pos")?,
        })
    }
}

/// A task's open files and filesystem context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct FilesOffsets {
    /// `task_struct.files`, `task_struct.fs`.
    pub task_files: u64,
    pub task_fs: u64,
    /// `files_struct.fdt`.
    pub fdt: u64,
    /// `fdtable.max_fds` (a `u32`), `.fd` (`struct file **`), `.close_on_exec` (a bitmap).
    pub max_fds: u64,
    pub fd: u64,
    pub close_on_exec: u64,
    /// `fs_struct.root`, `fs_struct.pwd` (each a `struct path`).
    pub fs_root: u64,
    pub fs_pwd: u64,
}

impl FilesOffsets {
    pub(crate) fn resolve(p: &Profile) -> Result<FilesOffsets> {
        let off = |ty: &str, f: &str| p.offset_of(ty, f);
        Ok(FilesOffsets {
            task_files: off("task_struct", "files")?,
            task_fs: off("task_struct", "fs")?,
            fdt: off("files_struct", "fdt")?,
            max_fds: off("fdtable", "max_fds")?,
            fd: off("fdtable", "fd")?,
            close_on_exec: off("fdtable", "close_on_exec")?,
            fs_root: off("fs_struct", "root")?,
            fs_pwd: off("fs_struct", "pwd")?,
        })
    }
}
