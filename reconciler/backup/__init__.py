"""Open WebUI's data kept safe: the backups on disk (store), one verified archive
(archive, copied in a chroot by chroot_copy), taking and restoring them (run), and
guard, the stack's hook around an upgrade (back up first, refuse or restore a rollback).
"""
