from sessionfix.replay import main

main()
