from gradgen.cli import main_entry

main_entry()
