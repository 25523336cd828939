"""sessionfix's rules, one libcst codemod per module (installed as `sessionfix.codemods`).

Each module is usable from `python -m libcst.tool codemod <module>.<Class>` when
`sessionfix.codemods` is listed in `.libcst.codemod.yaml`'s `modules`.
"""
