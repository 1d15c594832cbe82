from nsPod.cli import main

main()
