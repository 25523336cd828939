from sessionfix.cli import main

main()
