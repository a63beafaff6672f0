// Placeholder so the package builds while the module is written; remove once real tests exist.
